#pragma once
// asgd: asynchronous SGD through a parameter server (Downpour SGD, Dean et al. 2012; the
// delayed-gradient analysis of Agarwal & Duchi 2011 and Lian et al. 2015).
//
// The server applies each gradient the moment it arrives (psgd/async_update.h for the weighting
// and the optional staleness-aware rate) and answers that worker alone with the current
// parameters; nobody waits for anybody. Each update's staleness is the number of updates other
// workers made between this worker's read and its write.
//
// Iterations and epochs. One iteration is one server update, i.e. one worker's batch; the schedule
// counts node_count times ssgd's iterations per epoch (make_schedule in psgd/factory.h), so an
// epoch is ceil(N / (node_count x batch)) x node_count gradients, as many samples as an ssgd
// epoch: the server has processed one training set's worth. It is not "every worker has passed
// over its block once": each worker draws batches from its own block as fast as it can (a fast
// worker wraps around and reshuffles its block, a slow one covers part of it), and the epoch ends
// when that many gradients have arrived, whoever sent them, so nobody waits for a slow worker.
// workers.csv shows each worker's share. Gradients that arrive after the last update are
// discarded and reported as dropped.
//
// Delay compensation (--delay_compensation, DC-ASGD, Zheng et al. 2017): each update is corrected
// by a diagonal Taylor term for the distance between the parameters its worker was sent and the
// current ones, before it is applied (psgd/delay_compensation.h).
#include "psgd/async_update.h"
#include "psgd/gradient_worker.h"

namespace psgd {

struct AsgdOptions {
  bool staleness_lr = false;  // weight 1/max(n, staleness + 1) (async_update.h)
  // DC-ASGD (psgd/delay_compensation.h); lambda 0: off. momentum and nesterov are taken from the
  // server context's uplink codec (what the workers apply before sending).
  DelayCompensationOptions delay_compensation{};
};

class AsgdServer final : public ServerRole {
 public:
  AsgdServer(Schedule schedule, ServerContext context, AsgdOptions options = {});
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return update_.version(); }
  bool finished() const override { return iteration() >= schedule_.total_iterations(); }
  // Nobody waits for anybody: the others carry on (the driver ends the run if none is left).
  bool on_worker_lost(NodeId, Outbox&) override { return true; }
  // A replacement is sent the current parameters and pushes gradients like any worker.
  bool on_worker_rejoined(NodeId worker, Outbox& out) override;
  bool takes_replacements() const override { return !finished(); }
  std::int64_t worker_batches(NodeId worker) const override;
  // Checkpoint: the version and optimiser (AsyncUpdate), each worker's gradient count and, with
  // --delay_compensation, the compensation's per-worker history. What each worker was last sent
  // is not kept: a restored server sends every worker the checkpoint's parameters.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  // Sends the current parameters to `workers` (one shared message) and remembers what they got.
  void send_params(std::span<const NodeId> workers, Outbox& out);

  Schedule schedule_;
  ServerContext ctx_;
  AsyncUpdate update_;
  std::unique_ptr<Codec> downlink_;
  std::vector<std::int64_t> last_sent_;
  std::vector<std::int64_t> batches_;                // gradients received from each worker
  std::unique_ptr<DelayCompensation> compensation_;  // null: off
};

using AsgdWorker = GradientWorker;

}  // namespace psgd
