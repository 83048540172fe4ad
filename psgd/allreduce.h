#pragma once
// allreduce: synchronous data parallelism without a parameter server (the exchange of Horovod,
// Sergeev and Del Balso 2018, and of PyTorch DDP).
//
// Every iteration each worker computes the gradient of its next batch, the workers sum their
// gradients with an allreduce, divide by n, and each applies the same mean gradient with its own
// FlatSgd (same options as the server's would be). All workers start from the parameters the
// server sends once, and the sum is bit-identical everywhere, so the models stay identical; the
// server checks that with a hash of the parameters at every epoch end and fails the run if they
// differ.
//
// The server is only the orchestrator: it sends the initial Params, collects each worker's
// AllreduceReport per iteration (loss, samples, times), and at epoch ends takes worker 0's
// parameters into the global model so that the recorder evaluates and saves what the workers
// trained.
//
// Backends: with WorkerContext::collective null the worker runs RingAllreduce itself, as
// RingChunk messages to the next worker (the TCP client routes them over peer links, the
// simulator over its network model); otherwise compute_step() calls the blocking collective
// (Gloo) and the role sends no peer messages.
#include <map>
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/allreduce_compression.h"
#include "psgd/common.h"
#include "psgd/context.h"
#include "psgd/ring_allreduce.h"

namespace psgd {

// FNV-1a over the bytes of the parameters: equal models have equal hashes (0 is never returned).
std::uint64_t parameter_hash(std::span<const float> parameters);

// How every peer-to-peer worker (allreduce, broadcast, ccdc) ends an iteration: at epoch ends
// (and the last iteration) the report carries the parameter hash and the worker's buffers, and
// worker 0's the parameters, so the server checks that the models agree and evaluates one with
// the mean of the workers' buffers (psgd/common.h WorkerBuffers); the report goes to the
// server. Returns whether the worker computes again.
bool send_iteration_report(AllreduceReport report, Learner& learner, const Schedule& schedule,
                           NodeId worker, Outbox& out);

class AllreduceServer final : public ServerRole {
 public:
  AllreduceServer(Schedule schedule, ServerContext context);
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }

  // Checkpoint: the iteration. The workers hold the model and their optimisers (their own
  // state, WorkerRole::snapshot); the driver saves the parameters they report. A restored server
  // sends them the checkpoint's parameters tagged with its iteration. Each worker has drawn
  // batches_per_iteration batches per iteration (1; ccdc: one per block it holds).
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;
  std::int64_t worker_batches(NodeId worker) const override;
  void set_batches_per_iteration(std::int64_t batches) { batches_per_iteration_ = batches; }

 private:
  struct Round {
    int reports = 0;
    std::vector<WorkerReport> workers;
    std::vector<std::uint64_t> hashes;
    std::vector<float> params;
  };
  void close_round(Round& round);

  Schedule schedule_;
  ServerContext ctx_;
  std::vector<std::int64_t> last_;  // last iteration each worker reported
  std::map<std::int64_t, Round> rounds_;
  WorkerBuffers buffers_;  // the model's buffers: the mean of the workers' at epoch ends
  std::int64_t iteration_ = 0;
  std::int64_t batches_per_iteration_ = 1;
};

class AllreduceWorker final : public WorkerRole {
 public:
  // `compression`: what the allreduce sums (psgd/allreduce_compression.h); null: plain fp32.
  AllreduceWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
                  RingOptions ring = {}, std::unique_ptr<AllreduceCompression> compression = {});
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return iteration_; }
  // The optimiser's state (the same on every worker: they apply the same updates), and the
  // compression's own (PowerSGD's error feedback and Q: each worker's).
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  WorkerAction finish_iteration(Outbox& out);
  // Starts round `round_` of this iteration on the ring; true when the iteration's last round
  // is already done (one worker).
  bool start_round(std::span<const float> gradient, Outbox& out);

  WorkerContext ctx_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimiser_;
  std::unique_ptr<AllreduceCompression> compression_;
  RingAllreduce ring_;
  int round_ = 0;                 // of this iteration's compression_->rounds()
  std::uint64_t peer_bytes_ = 0;  // sent by the ring in this iteration's rounds
  bool started_ = false;
  bool reducing_ = false;
  std::int64_t iteration_ = 0;  // iterations completed
  std::vector<float> update_;   // this iteration's update (the mean gradient)
  StepStats step_;
  PhaseTimes times_;
  double reduce_start_ = 0;
};

}  // namespace psgd
