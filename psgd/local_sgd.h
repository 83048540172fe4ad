#pragma once
// local_sgd: local SGD / federated averaging (McMahan et al. 2017, "Communication-efficient
// learning of deep networks from decentralized data"; Stich 2019; Lin et al. 2020, "Don't use
// large mini-batches, use local SGD", for post-local SGD).
//
// Each round every worker starts from the server's parameters, takes H = sync_period steps of its
// own optimiser (FlatSgd with the job's learning rate, momentum, weight decay) on its own batches
// and sends how far it moved, delta_i = start - local_i (a ModelDelta, encoded with the uplink
// codec like a gradient). The server averages the workers' models weighted by the samples each
// processed in the round (FedAvg): params -= sum_i w_i * delta_i, and broadcasts the result.
//
// Momentum. The server has no optimiser of its own; each worker keeps its momentum buffer across
// rounds. The update is linear in (gradient, buffer), so with equal sample weights the mean of
// the workers' buffers evolves exactly as ssgd's server buffer does, and H = 1 reproduces ssgd's
// trajectory step for step, momentum, Nesterov and weight decay included (up to float rounding).
//
// Iterations count local steps: a round adds H to the iteration, so an epoch is the same number
// of batches per worker as in ssgd. A round never crosses an epoch boundary (the last round of an
// epoch is shorter), so the model is evaluated exactly at each epoch's end. With
// local_after_epochs = E the first E epochs use H = 1 (ssgd's trajectory), then sync_period
// (post-local SGD).
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/common.h"
#include "psgd/context.h"

namespace psgd {

struct LocalSgdOptions {
  int sync_period = 4;         // H: local steps between averages
  int local_after_epochs = 0;  // E: epochs of H = 1 before local steps (post-local SGD)
};

// Local steps of the round that starts at `iteration`; server and workers agree on it.
std::int64_t local_steps_at(const Schedule& schedule, const LocalSgdOptions& options,
                            std::int64_t iteration);

class LocalSgdServer final : public ServerRole {
 public:
  LocalSgdServer(Schedule schedule, ServerContext context, LocalSgdOptions options = {});
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }
  // Rounds average the remaining workers' models from then on; a round waiting only for the
  // lost worker closes at once. Its model in the open round, if already sent, is discarded.
  bool on_worker_lost(NodeId worker, Outbox& out) override;

  // Checkpoint: the iteration (rounds close before a checkpoint is taken, and the server keeps
  // no optimiser: the workers' momentum is in their own state). Every worker has taken one
  // batch per local step, so each has drawn iteration() batches.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;
  std::int64_t worker_batches(NodeId worker) const override;

 private:
  void close_round(Outbox& out);

  struct Pending {
    bool received = false;
    double arrival = 0;
    WorkerReport report;
  };

  Schedule schedule_;
  ServerContext ctx_;
  LocalSgdOptions options_;
  std::unique_ptr<Codec> downlink_;
  std::vector<std::unique_ptr<Codec>> uplink_;
  std::vector<std::vector<float>> slots_;  // each worker's decoded delta
  std::vector<Pending> pending_;
  std::vector<float> average_;
  WorkerBuffers buffers_;  // the model's buffers: the mean of the workers' latest
  int received_ = 0;
  std::vector<bool> alive_;
  int alive_count_ = 0;
  double decode_s_ = 0;
  std::int64_t iteration_ = 0;
};

class LocalSgdWorker final : public WorkerRole {
 public:
  LocalSgdWorker(WorkerContext context, Schedule schedule, LocalSgdOptions options,
                 const OptimizerSpec& optimizer);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return done_; }
  // The local optimiser's momentum buffer, the uplink codec's state and the step count.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  WorkerContext ctx_;
  Schedule schedule_;
  LocalSgdOptions options_;
  std::unique_ptr<Optimizer> optimiser_;  // local; its momentum buffer persists across rounds
  std::unique_ptr<Codec> uplink_;
  std::unique_ptr<Codec> downlink_;
  std::vector<float> start_;  // the parameters the round started from
  std::vector<float> delta_;
  PayloadRecycler payloads_;  // the uplink payload, reused between rounds
  std::int64_t iteration_ = -1;
  std::int64_t steps_ = 0;  // local steps this round
  std::int64_t taken_ = 0;  // of which taken
  double loss_sum_ = 0;
  std::int64_t samples_ = 0;
  std::int64_t done_ = 0;
  double waiting_since_ = -1;
  PhaseTimes times_;
};

}  // namespace psgd
