#pragma once
// The checkpoint file of a parameter-server run (init_server --checkpoint_every, --resume).
//
// Layout (all integers little-endian):
//
//   magic         8 bytes  "PSGDCKPT"
//   format        u32      kCheckpointFormat
//   protocol      u32      kProtocolVersion of the writer (network/messages.h)
//   length        u64      bytes of header + body that follow the digest
//   sha256        32 bytes SHA-256 (OpenSSL) of those header + body bytes
//   header        Cereal (network/archive.h): model, parameter count, job config hash, strategy
//   body          Cereal: iteration, epochs done, parameters, the strategy's own state
//                 (ServerRole::snapshot), each worker's batch count, the driver's state (JSON),
//                 each worker's own state (WorkerRole::snapshot: its optimiser's momentum, its
//                 codecs' residuals and random streams; empty for a worker that keeps none),
//                 the model average (--model_average; empty when off)
//
// When (checkpoint_due below): every --checkpoint_every iterations and at every epoch end, the
// same rule on the server and, for the peer-to-peer strategies, on the workers, which send their
// state when their own iteration count reaches a checkpoint (experiments/server/checkpointer.h).
//
// decode_checkpoint() checks the fields in that order and refuses anything else with a
// CheckpointError that says which check failed in one line: too short / truncated, not a psgd
// checkpoint, another format version, another protocol version, corrupt (digest mismatch or
// trailing bytes), and check_matches() then: another model, another parameter count, another
// job configuration. The bounded archive means a corrupt count cannot allocate more than the
// file holds.
//
// Writing goes to PATH.tmp, is flushed and fsync'ed, then renamed over PATH (and the directory
// fsync'ed), so PATH always holds either the previous checkpoint or the new one, never half.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "psgd/context.h"

namespace psgd {

// 2: worker states and the model average.
inline constexpr std::uint32_t kCheckpointFormat = 2;
inline constexpr char kCheckpointMagic[8] = {'P', 'S', 'G', 'D', 'C', 'K', 'P', 'T'};
inline constexpr const char* kCheckpointFile = "checkpoint.bin";

// A checkpoint that cannot be used, with the reason in one line. A ConfigError: init_server
// exits 2 before anything starts.
class CheckpointError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

// What identifies the job a checkpoint belongs to.
struct CheckpointHeader {
  std::string model;
  std::uint64_t num_parameters = 0;
  std::string config_hash;  // job_config_hash() (experiments/job_spec.h)
  std::string strategy;     // --psgd
};

struct Checkpoint {
  CheckpointHeader header;
  std::int64_t iteration = 0;  // updates applied to `parameters`
  std::int32_t epochs_done = 0;
  std::vector<float> parameters;
  std::vector<std::uint8_t> role_state;      // ServerRole::snapshot()
  std::vector<std::int64_t> worker_batches;  // ServerRole::worker_batches() of every worker
  std::string driver_state;                  // the driver's own JSON (recorder, events)
  std::vector<std::vector<std::uint8_t>> worker_states;  // WorkerRole::snapshot() of each worker
  std::vector<std::uint8_t> average;                     // ModelAverage::state(), or empty
};

// Whether a run with --checkpoint_every `every` writes a checkpoint when an update takes it from
// iteration `before` to `after` (> before): it crossed a multiple of `every`, or an epoch's end,
// and the run is not over (the end writes the run directory instead). Never with every <= 0.
bool checkpoint_due(const Schedule& schedule, std::int64_t every, std::int64_t before,
                    std::int64_t after);

std::vector<std::uint8_t> encode_checkpoint(const Checkpoint& checkpoint);
// Throws CheckpointError (never anything else for any input bytes).
Checkpoint decode_checkpoint(std::span<const std::uint8_t> bytes);
// Throws CheckpointError when `checkpoint` belongs to another model or job than `expected`.
void check_matches(const Checkpoint& checkpoint, const CheckpointHeader& expected);

// SHA-256 (hex) of the bytes of `values` (summary.json parameters_sha256).
std::string sha256_hex(std::span<const float> values);

// Atomic write (see above); IoError on failure.
void write_checkpoint_file(const std::string& path, const std::vector<std::uint8_t>& bytes);
// The file's bytes; CheckpointError when it is missing or unreadable.
std::vector<std::uint8_t> read_checkpoint_file(const std::string& path);

}  // namespace psgd
