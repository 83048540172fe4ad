#pragma once
// The messages psgd processes exchange, and their wire encoding.
//
// Every message travels in one frame (network/frame.h): a 16-byte header naming its type and
// length, then the Cereal-serialised body. ErrorMessage is the exception: its body is raw UTF-8 so
// that a peer of ANY protocol version can read why it was refused.
//
// Authentication (network/auth.h): AuthHello -> AuthChallenge -> AuthProof -> AuthOk, first.
// Orchestration (experiments/):  Hello -> Job -> Ready ... Finish, ErrorMessage at any time;
// Heartbeat both ways on an idle link once the handshake is done.
// With --ship_data:               Hello -> Job -> DataOffer -> DataChunk x n -> Ready ...
// Strategy traffic (psgd/ roles): Params (server -> worker), Gradient or ModelDelta
// (worker -> server).
// Peer-to-peer strategies (allreduce): ... Ready -> PeerTable -> workers link up (PeerHello on
// each worker-to-worker connection) -> PeersUp -> Params; then RingChunk between workers and
// AllreduceReport worker -> server.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/payload.h"
#include "core/metrics.h"

namespace psgd {

// Bump whenever a message layout or the frame header changes.
// 2: Gradient.compression_error; 3: ModelDelta, Hello.slowdown; 4: DataOffer, DataChunk;
// 5: Ready.peer_port, PeerTable, PeerHello, PeersUp, RingChunk, AllreduceReport, PeerGradient
// 6: Job.block_ids, Job.block_sizes (gc, ndc)
// 7: AuthHello, AuthChallenge, AuthProof, AuthOk (network/auth.h), Heartbeat
// 8: CcdcCoded, CcdcSlice, AllreduceReport.multicast_bytes (--codec ccdc, psgd/ccdc.h)
// 9: Job.start_batch (a worker resuming a checkpoint or taking over a lost worker's slot)
inline constexpr std::uint16_t kProtocolVersion = 10;

enum class MessageType : std::uint16_t {
  kError = 1,
  kHello = 2,
  kJob = 3,
  kReady = 4,
  kFinish = 5,
  kDataOffer = 6,
  kDataChunk = 7,
  kPeerTable = 8,
  kPeerHello = 9,
  kPeersUp = 10,
  kAuthHello = 11,
  kAuthChallenge = 12,
  kAuthProof = 13,
  kHeartbeat = 14,
  kAuthOk = 15,
  kParams = 16,
  kGradient = 17,
  kModelDelta = 18,
  kRingChunk = 19,
  kAllreduceReport = 20,
  kPeerGradient = 21,
  kCcdcCoded = 40,
  kCcdcSlice = 41,
  kShmOffer = 60,
  kShmReply = 61,
  kShmFrame = 62,
};

struct ErrorMessage {
  std::string text;
};

// worker -> server, first frame on a connection: the worker's nonce and who it says it is.
struct AuthHello {
  std::uint32_t protocol = kProtocolVersion;
  std::vector<std::uint8_t> nonce;  // kAuthNonceBytes random bytes
  std::string identity;             // "host:pid"; Hello must say the same
  bool has_key = false;             // the worker was given a passphrase
};

// server -> worker: the server's nonce and, with a passphrase, its proof (network/auth.h).
struct AuthChallenge {
  std::vector<std::uint8_t> nonce;
  std::vector<std::uint8_t> proof;  // empty when the server has no passphrase
  bool required = false;            // the server has a passphrase
};

// worker -> server: the worker's proof; Hello follows at once.
struct AuthProof {
  std::vector<std::uint8_t> proof;  // empty when neither side has a passphrase
};

// server -> worker: the proof checked out; the worker may say Hello. (The worker waits for it,
// so a refused worker has nothing unread on the server's side and reads the refusal intact.)
struct AuthOk {};

// Either way, on a link that has carried nothing for --heartbeat_interval seconds.
struct Heartbeat {};

// worker -> server, after authentication.
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
  // Batches this worker id has already drawn from its batch order (a resumed run, or a slot taken
  // over from a lost worker): the worker skips them, so it continues the same batch order.
  std::int64_t start_batch = 0;
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
  // Peer-to-peer strategies: the port this worker accepts peer links on (its mesh listener; for
  // the gloo backend worker 0's rendezvous store). 0: none.
  std::int32_t peer_port = 0;
};

// server -> worker (peer-to-peer strategies, once every worker is Ready): where each worker
// listens, indexed by worker id.
struct PeerTable {
  std::vector<std::string> hosts;
  std::vector<std::int32_t> ports;
  // A random key for this job's peer links (32 bytes), known only to its workers: each link's
  // PeerHello proves it (network/auth.h, peer_proof).
  std::vector<std::uint8_t> key;
};

// worker -> worker, first frame on a peer link: who is calling, and the proof that it is a
// worker of this job: HMAC-SHA256 under PeerTable::key of (worker, callee, node_count, nonce).
struct PeerHello {
  std::int32_t worker = 0;
  std::int32_t node_count = 0;
  std::vector<std::uint8_t> nonce;  // 32 random bytes, never accepted twice by one mesh
  std::vector<std::uint8_t> proof;  // empty on a mesh without a key (tests)
};

// worker -> server: every peer link of this worker is up.
struct PeersUp {
  std::int32_t links = 0;
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

// worker -> next worker in the ring (psgd/ring_allreduce.h): one chunk of one step of the ring
// allreduce of round `round`. On the wire the values are a std::vector<float> (a size tag, then
// the fp32 bytes). Neither side copies them: a chunk decoded from a frame a Connection read views
// that frame (`owner` keeps it alive), and a chunk the ring sends views the buffer the values
// live in, which the frame's gather write reads directly (RingAllreduce keeps such a buffer
// unchanged until its successor has received the chunk, or holds it with `owner`). `values` holds
// them instead when there is nothing to view (a frame decoded without an owner; tests).
struct RingChunk {
  std::int64_t round = 0;
  std::int32_t step = 0;   // 0 .. 2(n-1)-1: reduce-scatter, then all-gather
  std::int32_t chunk = 0;  // chunk within the step's segment
  std::vector<float> values;
  bool viewed = false;                 // the values are `view`, not `values`
  std::span<const std::uint8_t> view;  // fp32 bytes (not necessarily 4-byte aligned)
  std::shared_ptr<const void> owner;   // keeps `view` alive; null: the sender's own buffer

  // The values as bytes, wherever they live.
  std::span<const std::uint8_t> bytes() const {
    if (viewed) return view;
    return {reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(float)};
  }
  // Number of values.
  std::size_t size() const { return bytes().size() / sizeof(float); }
};

// worker -> server (allreduce): one worker's part of a finished iteration. At epoch ends every
// worker sends the hash of its parameters (they must be equal) and worker 0 the parameters.
struct AllreduceReport {
  std::int64_t iteration = 0;  // iterations done after this one
  double loss = 0;
  std::int64_t samples = 0;
  PhaseTimes times;              // wait_s: time spent in the allreduce
  std::uint64_t peer_bytes = 0;  // bytes this worker sent to peers in this iteration
  // The same traffic with each multicast (one message to several peers) counted once.
  std::uint64_t multicast_bytes = 0;
  std::uint64_t param_hash = 0;  // 0: not an epoch end
  std::vector<float> params;     // worker 0 at epoch ends; empty otherwise
};

// worker -> every other worker (broadcast): the encoded gradient of one batch.
struct PeerGradient {
  std::int32_t from = 0;
  std::int64_t iteration = 0;  // iterations done before this gradient's
  Payload values;
};

// worker -> the other r workers of an (r+1)-subset (--codec ccdc, psgd/ccdc.h): the XOR of the
// fp32 bit patterns of the sender's pieces of the blocks those workers lack.
struct CcdcCoded {
  std::int32_t from = 0;
  std::int64_t iteration = 0;  // iterations done before this one
  std::int64_t group = 0;      // the (r+1)-subset, by its rank in lexicographic order
  std::vector<std::uint32_t> bits;
};

// worker -> every other worker (--codec ccdc): the sender's slice of the sum of all block
// gradients (the all-gather after the coded shuffle).
struct CcdcSlice {
  std::int32_t from = 0;
  std::int64_t iteration = 0;
  std::vector<float> values;
};

// Shared memory between the two ends of a link on one machine (network/tcp/shm_channel.h). These
// three are handled inside the Connection; its owner never sees them.
//
// Either way: a segment `name` with `slots` slots of `slot_bytes` per direction, for the peer to
// open if it runs on the same machine.
struct ShmOffer {
  std::string name;
  std::uint64_t slot_bytes = 0;
  std::uint32_t slots = 0;
};

// The answer to a ShmOffer: whether the peer mapped the segment, and if not, why.
struct ShmReply {
  bool accepted = false;
  std::string why;
};

// In place of a frame whose body was copied into shared-memory slot `slot`: the body's type and
// length. The receiver decodes the body where it lies.
struct ShmFrame {
  std::uint32_t slot = 0;
  std::uint16_t type = 0;
  std::uint64_t body_bytes = 0;
};

using Message = std::variant<ErrorMessage, Hello, Job, Ready, Finish, Params, Gradient, ModelDelta,
                             DataOffer, DataChunk, PeerTable, PeerHello, PeersUp, RingChunk,
                             AllreduceReport, PeerGradient, AuthHello, AuthChallenge, AuthProof,
                             Heartbeat, AuthOk, CcdcCoded, CcdcSlice, ShmOffer, ShmReply, ShmFrame>;

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
// The same, for a body kept alive by `owner`: payloads (Params, Gradient, ...) view `body`
// instead of copying it, and hold `owner` for as long as they live.
Message decode_body(MessageType type, std::span<const std::uint8_t> body,
                    const std::shared_ptr<const void>& owner);

}  // namespace psgd
