#pragma once
// The server's checkpoints (--checkpoint_every, --resume; the format is psgd/checkpoint.h).
//
// load() reads RUN_DIR/checkpoint.bin for --resume and checks, before any worker is asked to
// join, that it belongs to this job and that the strategy accepts its state.
//
// Writing. A checkpoint holds the server's state (the parameters, the role's snapshot, the
// recorder's, the events, the model average) and every worker's own state (WorkerRole::snapshot:
// its optimiser's momentum, its codecs' residuals and random streams), and all of it must belong
// to the same moment of the run. When an update makes one due (psgd::checkpoint_due), the
// checkpointer collects the workers' states first:
//
//   parameter server (ssgd, asgd, ssp, local_sgd, gc, ndc): the driver sends every worker a
//     StateRequest BEFORE the messages of that update (ssgd: the next round's parameters), and
//     each answers with a WorkerState after everything it sent before. What a worker sends after
//     its state is held here, unapplied, until the checkpoint is written, so each state matches
//     exactly the gradients the server has applied from that worker. Workers that have not
//     answered yet go on being served (asgd applies their gradients meanwhile), so the checkpoint
//     is of the moment the last state arrives, whatever the iteration then. The synchronous
//     strategies do not move on meanwhile: every gradient of the next round comes after a state.
//   peer-to-peer (allreduce, broadcast, ccdc): the workers hold the model and run ahead of the
//     server; each sends its state and parameters unasked when its own iteration count reaches a
//     checkpoint, by the same rule. The round cannot close past the checkpoint's iteration
//     before the last of those states has arrived, since that worker's next report follows it.
//
// A worker lost while states are collected abandons that checkpoint (the previous one stays);
// the held messages then go to the role as if nothing had happened. Socket-free: the driver
// sends the requests and hands over what arrives.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.h"
#include "experiments/job_spec.h"
#include "network/messages.h"
#include "psgd/checkpoint.h"
#include "psgd/context.h"
#include "psgd/strategy.h"

namespace psgd {

class RunRecorder;

class Checkpointer {
 public:
  // `model_sha256`: JobPlan::script_sha256() (--model script:FILE), part of the job's identity.
  Checkpointer(const JobSpec& spec, const Schedule& schedule, std::size_t num_parameters,
               std::size_t num_buffers = 0, std::string model_sha256 = "");

  CheckpointHeader header() const;
  // --resume: the checkpoint in `run_dir`, checked against this job. ConfigError naming the file.
  Checkpoint load(const std::string& run_dir) const;

  // Whether an update from iteration `before` to `after` calls for a checkpoint.
  bool due(std::int64_t before, std::int64_t after) const;
  // Whether the workers send their state unasked (peer-to-peer) rather than on StateRequest.
  bool workers_offer() const { return workers_offer_; }

  // Starts collecting the states of `workers` for a checkpoint of the role's `iteration`.
  void begin(std::span<const int> workers, std::int64_t iteration);
  bool collecting() const { return collecting_; }
  // While collecting: whether what `worker` sends now waits for the checkpoint (it has sent its
  // state, or its state is not being collected).
  bool holds(int worker) const;
  void hold(int worker, Message&& message, std::size_t bytes);
  // A WorkerState from `worker`: collected, or (peer-to-peer) kept until its checkpoint begins.
  void on_state(int worker, WorkerState&& state);
  // Every state the checkpoint needs is here.
  bool complete() const;

  struct Held {
    int worker = 0;
    Message message;
    std::size_t bytes = 0;
  };
  // Stops collecting (after write(), or to abandon the checkpoint); returns the held messages in
  // the order they arrived, for the driver to hand to the role.
  std::deque<Held> end();

  // Writes the checkpoint to `path` (atomically, psgd/checkpoint.h) once complete(): the role's
  // snapshot, the recorder's state and model average, `events`, the collected worker states,
  // and the parameters (peer-to-peer: the workers', which are first written into `parameters`).
  // IoError ("cannot write <path>: <reason>") when writing failed, the previous checkpoint left
  // whole; Error when the role cannot take a snapshot now.
  void write(const ServerRole& role, RunRecorder& recorder, std::span<float> parameters,
             const nlohmann::json& events, const std::string& path);
  int written() const { return written_; }
  // The iteration of the last checkpoint written by this process (-1: none yet).
  std::int64_t last_iteration() const { return last_iteration_; }

 private:
  const JobSpec& spec_;
  Schedule schedule_;
  std::size_t num_parameters_;
  std::size_t num_buffers_;
  std::string model_sha256_;
  bool workers_offer_ = false;
  bool collecting_ = false;
  std::int64_t iteration_ = 0;
  std::vector<bool> expected_;
  std::vector<std::optional<WorkerState>> states_;  // collected, by worker
  // Peer-to-peer: what each worker sent for checkpoints not begun yet, by iteration.
  std::vector<std::map<std::int64_t, WorkerState>> offered_;
  std::deque<Held> held_;
  int written_ = 0;
  std::int64_t last_iteration_ = -1;
};

}  // namespace psgd
