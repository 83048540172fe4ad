#pragma once
// The messages psgd processes exchange, and their wire encoding.
//
// Every message travels in one frame (network/frame.h): a 16-byte header naming its type and
// length, then the Cereal-serialised body. ErrorMessage is the exception: its body is raw UTF-8 so
// that a peer of ANY protocol version can read why it was refused.
//
// Orchestration (experiments/):  Hello -> Job -> Ready ... Finish, ErrorMessage at any time.
// With --ship_data:               Hello -> Job -> DataOffer -> DataChunk x n -> Ready ...
// Strategy traffic (psgd/ roles): Params (server -> worker), Gradient or ModelDelta
// (worker -> server).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "codecs/codec.h"
#include "core/metrics.h"

namespace psgd {

// Bump whenever a message layout or the frame header changes.
// 2: Gradient.compression_error; 3: ModelDelta, Hello.slowdown; 4: DataOffer, DataChunk
inline constexpr std::uint16_t kProtocolVersion = 5;

enum class MessageType : std::uint16_t {
  kError = 1,
  kHello = 2,
  kJob = 3,
  kReady = 4,
  kFinish = 5,
  kDataOffer = 6,
  kDataChunk = 7,
  kParams = 16,
  kGradient = 17,
  kModelDelta = 18,
};

struct ErrorMessage {
  std::string text;
};

// worker -> server, first frame on a connection.
struct Hello {
  std::uint32_t protocol = kProtocolVersion;
  std::string host;          // the worker's host name
  std::int32_t pid = 0;      // the worker's process id, for logs
  std::int32_t cores = 0;    // hardware threads on the worker's host
  std::int32_t threads = 0;  // torch threads asked for on the client's command line (0: auto)
  std::string version;       // psgd build (git revision), for the run's provenance
  double slowdown = 1;       // the client's --slowdown (injected compute slowness), for the record
};

// server -> worker: the job and this worker's share of the data.
struct Job {
  std::int32_t worker_id = 0;
  std::string spec_json;              // the JobSpec, as in config.json
  std::vector<std::int64_t> samples;  // indices into the training set this worker holds
  std::int32_t threads = 1;           // torch threads the worker should use
  std::uint64_t num_parameters = 0;   // the model size the server built, checked by the worker
  std::string data_hash;              // nn::content_hash of the server's training set
  std::vector<float> norm_shift;      // the normaliser's statistics (nn/normalize.h), computed
  std::vector<float> norm_scale;      // by the server on its training rows; empty for "none"
  std::int64_t train_size = 0;        // samples in the whole training set (for the schedule)
  // --codec gc / ndc: the blocks `samples` is the concatenation of, and their sizes, so the
  // worker can draw one batch per block with a batch order every replica of a block agrees on.
  std::vector<std::int64_t> block_ids;
  std::vector<std::int64_t> block_sizes;
};

// worker -> server, after a Job with ship_data: the content hash of the training set this
// worker holds itself (empty: none, or not the job's). Equal to Job::data_hash: no transfer.
struct DataOffer {
  std::string hash;
};

// server -> worker: one piece of the worker's data pack (nn/data_pack.h), zlib-compressed.
// count == 0 means "your own copy matches, nothing is shipped".
struct DataChunk {
  std::uint32_t index = 0;               // 0 .. count-1, sent in order
  std::uint32_t count = 0;               // chunks in the pack
  std::uint64_t total_bytes = 0;         // uncompressed size of the whole pack
  std::string total_sha256;              // of the whole pack
  std::uint64_t raw_bytes = 0;           // uncompressed size of this chunk
  std::string sha256;                    // of this chunk, uncompressed
  std::vector<std::uint8_t> compressed;  // zlib stream of this chunk
};

// worker -> server: data loaded, model built, ready to train.
struct Ready {
  std::int32_t worker_id = 0;
  std::uint64_t num_parameters = 0;
  std::int64_t samples = 0;
  std::int32_t threads = 0;
  std::string detail;  // e.g. the BLAS in use, shown in the server's log
};

// server -> worker: the job is over (status "completed" or why not).
struct Finish {
  std::string status;
  bool ok = true;
};

// server -> worker: the model to compute the next gradient on.
struct Params {
  std::int64_t iteration = 0;
  Payload values;
};

// worker -> server: the gradient of one batch, computed on Params of `iteration`.
struct Gradient {
  std::int64_t iteration = 0;
  Payload values;
  double loss = 0;
  std::int64_t samples = 0;
  PhaseTimes times;  // this iteration's compute/encode/decode and the wait before it
  // ‖g − D(C(g))‖ / ‖g‖ of this gradient, negative when not measured this iteration (see
  // SsgdWorker: every iteration when the codec knows it for free, else every 10th).
  double compression_error = -1;
};

// worker -> server (local_sgd): how far `local_steps` local optimiser steps moved the model from
// the Params of `iteration`: values = params(iteration) - local params, encoded like a gradient.
struct ModelDelta {
  std::int64_t iteration = 0;
  Payload values;
  double loss = 0;               // mean batch loss over the local steps
  std::int64_t samples = 0;      // samples of all local steps
  std::int64_t local_steps = 0;  // local optimiser steps taken
  PhaseTimes times;              // summed over the local steps
};

using Message = std::variant<ErrorMessage, Hello, Job, Ready, Finish, Params, Gradient, ModelDelta,
                             DataOffer, DataChunk>;

MessageType type_of(const Message& message);
const char* type_name(MessageType type);

// Serialises the body only (no frame header).
std::vector<std::uint8_t> encode_body(const Message& message);
// Appends the body to `out` (lets the framer write the header in front without a copy). With
// `blobs`, large arrays are not copied but listed there (see wire::Blob in network/archive.h).
namespace wire {
struct Blob;
}
void append_body(const Message& message, std::vector<std::uint8_t>& out,
                 std::vector<wire::Blob>* blobs = nullptr);

// Parses a body of the given type. Throws ProtocolError for an unknown type, a truncated or
// oversized field, or trailing bytes.
Message decode_body(MessageType type, std::span<const std::uint8_t> body);

}  // namespace psgd
