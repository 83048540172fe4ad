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
// simulator over its network model); otherwise the step's detached part (compute_detached(),
// psgd/strategy.h) computes the gradient and calls the blocking collective (Gloo, shm), and the
// role sends no peer messages. Detached, so that the TCP client's event thread keeps answering
// heartbeats while a worker waits in the collective for a slower one: a worker that waited
// longer than the server's --dead_after was otherwise taken for the lost one.
//
// A lost worker (ServerRole::on_worker_lost). With --allreduce_on_loss fail the run ends. With
// shrink (ring backend only) the server re-forms the ring among the remaining members:
//   1. halt: it sends each member RingHalt, naming a new generation. A member leaves the ring it
//      was in (keeping a copy of its own gradient, if it had one that no ring has summed) and
//      answers RingHalted: the iterations it has applied, its parameters and optimiser state.
//      A ring stalls when a member is lost, but members that received every chunk they needed
//      before the loss have completed the iteration the others are stuck in. So they are at most
//      one iteration apart, and all continue after the highest, C.
//   2. reform: the server closes every round up to C with the reports it has, and sends each
//      member RingReform: the new ring (the members in worker order) and C. A member at C - 1
//      adopts the parameters and optimiser state of a member at C (the lowest-numbered): the sum
//      of iteration C held its gradient, so it applies what the others applied. A member that
//      has the gradient of C + 1 reduces it on the new ring, the others compute it.
// Chunks carry round = generation << kGenerationShift | iteration, so chunks of an abandoned ring
// still in flight are dropped and those of a new ring that arrive before its RingReform wait.
// Every later iteration averages the k members' gradients (divides by k, not n) with the same
// learning rate and iterations per epoch: the global batch shrinks to k x --batch_size and the
// data only the lost worker held is no longer trained on. The server reports a StrategyEvent
// (summary.json events, the timeline). Every member then sends its parameters at epoch ends, so
// the server has them whoever was lost.
#include <map>
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/allreduce_compression.h"
#include "psgd/common.h"
#include "psgd/context.h"
#include "psgd/ring_allreduce.h"

namespace psgd {

inline constexpr int kGenerationShift = 40;  // RingChunk::round: the generation, then iteration

// FNV-1a over the bytes of the parameters: equal models have equal hashes (0 is never returned).
std::uint64_t parameter_hash(std::span<const float> parameters);

// How every peer-to-peer worker (allreduce, broadcast, ccdc) ends an iteration: at epoch ends
// (and the last iteration) the report carries the parameter hash and the worker's buffers, and
// with `with_params` (worker 0; every member of a shrinkable ring) the parameters, so the server
// checks that the models agree and evaluates one with the mean of the workers' buffers
// (psgd/common.h WorkerBuffers); the report goes to the server. Returns whether the worker
// computes again.
bool send_iteration_report(AllreduceReport report, Learner& learner, const Schedule& schedule,
                           bool with_params, Outbox& out);

class AllreduceServer final : public ServerRole {
 public:
  // shrink: a lost worker re-forms the ring without it (see above); otherwise it ends the run.
  AllreduceServer(Schedule schedule, ServerContext context, bool shrink = false);
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }
  bool on_worker_lost(NodeId worker, Outbox& out) override;
  // The ring's members, in ring order.
  const std::vector<int>& members() const { return members_; }

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
    std::vector<bool> reported;  // by worker
    std::vector<WorkerReport> workers;
    std::vector<std::uint64_t> hashes;
    std::vector<float> params;
  };
  struct Halted {
    std::int64_t iteration = 0;
    std::vector<float> params;
    std::vector<std::uint8_t> state;
  };
  void on_report(NodeId from, const AllreduceReport& r);
  void on_halted(NodeId from, const RingHalted& h, Outbox& out);
  // Closes round iteration_ + 1 with the reports it has.
  void close_round(Round& round);
  // Closes, in order, the rounds every member has reported.
  void close_complete_rounds();
  void halt(Outbox& out);
  void reform(Outbox& out);

  Schedule schedule_;
  ServerContext ctx_;
  bool shrink_;
  std::vector<std::int64_t> last_;  // last iteration each worker reported
  std::map<std::int64_t, Round> rounds_;
  WorkerBuffers buffers_;  // the model's buffers: the mean of the workers' at epoch ends
  std::int64_t iteration_ = 0;
  std::int64_t batches_per_iteration_ = 1;
  // The ring (see the header comment).
  std::vector<int> members_;
  std::int64_t generation_ = 0;
  bool halting_ = false;
  std::map<int, Halted> halted_;  // RingHalted answers of this generation, by member
  std::vector<int> lost_;         // members lost since the last ring formed
};

class AllreduceWorker final : public WorkerRole {
 public:
  AllreduceWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
                  RingOptions ring = {}, std::unique_ptr<AllreduceCompression> compression = {},
                  bool shrink = false);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  // With a blocking collective: the gradient and its allreduce (nothing without one).
  void compute_detached() override;
  std::int64_t iterations_done() const override { return iteration_; }
  // The optimiser's state (the same on every worker: they apply the same updates), and the
  // compression's own (PowerSGD's error feedback and Q: each worker's).
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  WorkerAction on_chunk(const RingChunk& chunk, Outbox& out);
  WorkerAction on_halt(const RingHalt& halt, Outbox& out);
  WorkerAction on_reform(const RingReform& reform, Outbox& out);
  // Sums `gradient`, this worker's of iteration iteration_ + 1, on the ring (every round of the
  // compression).
  WorkerAction reduce(std::span<const float> gradient, Outbox& out);
  // Starts round `round_` of this iteration on the ring; true when the iteration's last round
  // is already done (one worker).
  bool start_round(std::span<const float> gradient, Outbox& out);
  WorkerAction finish_iteration(Outbox& out);
  WorkerAction compute_next() {
    awaiting_compute_ = true;
    return {.compute = true, .detached = ctx_.collective != nullptr};
  }
  std::int64_t ring_round() const {
    return (generation_ << kGenerationShift) | (iteration_ * compression_->rounds() + round_);
  }

  WorkerContext ctx_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimiser_;
  std::unique_ptr<AllreduceCompression> compression_;
  RingOptions ring_options_;
  std::unique_ptr<RingAllreduce> ring_;
  int round_ = 0;                 // of this iteration's compression_->rounds()
  std::uint64_t peer_bytes_ = 0;  // sent by the ring in this iteration's rounds
  bool shrink_ = false;
  std::vector<int> members_;  // the ring this worker is in, in ring order
  std::int64_t generation_ = 0;
  bool halted_ = false;            // between RingHalt and RingReform
  bool awaiting_compute_ = false;  // asked its driver for compute_step(), not called yet
  bool pending_ = false;           // own_ holds a gradient of iteration_ + 1 no ring has summed
  std::vector<float> own_;
  std::vector<RingChunk> early_;  // chunks of the next ring that came before its RingReform
  bool started_ = false;
  bool reducing_ = false;
  std::int64_t iteration_ = 0;  // iterations completed
  std::vector<float> update_;   // this iteration's update (the mean gradient)
  StepStats step_;
  PhaseTimes times_;
  double reduce_start_ = 0;
  bool collective_done_ = false;  // compute_detached() left the mean in update_
};

}  // namespace psgd
