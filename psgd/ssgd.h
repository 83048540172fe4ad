#pragma once
// ssgd: synchronous data-parallel SGD through a parameter server (the "parameter averaging" of
// Dean et al. 2012 in its synchronous form; Goyal et al. 2017 for large-batch practice).
//
// Each iteration every worker computes the gradient of its next batch on the current parameters
// and sends it encoded. The server decodes and averages the n gradients, applies them with its
// optimiser and sends the new parameters to every worker, so all workers start the next
// iteration from the same model. With n workers of batch B this is one SGD step on a batch of
// n*B samples: the server's update equals a single-process step on the mean gradient.
//
// Backup workers (Chen et al. 2016, "Revisiting distributed synchronous SGD"): with
// wait_for = k < n the server closes each round with the first k gradients of that iteration,
// averages those k, and replies to those k workers only. A gradient that arrives after its round
// closed is dropped (reported with dropped = true) and its sender is sent the current parameters
// at once, so a straggler always computes on the newest model instead of working through a queue
// of stale broadcasts.
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/common.h"
#include "psgd/context.h"
#include "psgd/gradient_worker.h"

namespace psgd {

struct SsgdOptions {
  int wait_for = 0;  // gradients that close a round; 0 means all node_count
};

class SsgdServer final : public ServerRole {
 public:
  SsgdServer(Schedule schedule, ServerContext context, SsgdOptions options = {});
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }

  int wait_for() const { return wait_for_; }
  // With wait_for < node_count the rounds close without the lost worker as long as at least
  // wait_for workers remain; with wait_for == node_count no round could close again: false.
  bool on_worker_lost(NodeId worker, Outbox& out) override;

  // Checkpoint: iteration, the optimiser's state, each worker's latest buffers, what each worker
  // was last sent and
  // how many gradients it has sent (its batches). Taken right after a round closes, when no
  // gradient of the next round has arrived yet, so the open round is empty and not saved; a
  // restored server starts with every worker alive and sends the checkpoint's parameters.
  // A replacement counts as alive again and is sent the current parameters (or, when its
  // predecessor's gradient is already in the open round, the parameters that round produces).
  bool on_worker_rejoined(NodeId worker, Outbox& out) override;
  bool takes_replacements() const override { return !finished(); }
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;
  std::int64_t worker_batches(NodeId worker) const override;

 private:
  void close_round(Outbox& out);
  void drop_late(NodeId from, const Gradient& g, Outbox& out);
  // Adds the received gradients to sum_ in worker order as far as that order allows: worker w's
  // once every worker before it is in, or, at the close (`closing`), skipping the workers the
  // round closes without. See on_message.
  void sum_in_worker_order(bool closing);

  struct Pending {
    bool received = false;
    double arrival = 0;
    WorkerReport report;
    // The worker's gradient: its decoded slot, or the received payload itself when the codec can
    // view it decoded (plain fp32: no copy into the slot).
    Payload held;
    std::span<const float> values;
  };

  Schedule schedule_;
  ServerContext ctx_;
  int wait_for_;
  std::unique_ptr<Optimizer> optimiser_;
  WorkerBuffers buffers_;  // the model's buffers: the mean of the workers' latest
  std::unique_ptr<Codec> downlink_;
  std::vector<std::unique_ptr<Codec>> uplink_;  // one decoder per worker
  std::vector<float> sum_;                      // the round's sum so far, then its mean
  PayloadRecycler replies_;                     // the parameters sent when a round closes
  std::vector<std::vector<float>> slots_;       // each worker's decoded gradient
  std::vector<Pending> pending_;
  std::vector<bool> received_mask_;
  std::vector<std::int64_t> last_sent_;  // iteration of the parameters each worker computes on
  std::vector<std::int64_t> batches_;    // gradients received from each worker (used or dropped)
  int received_ = 0;
  std::size_t next_to_sum_ = 0;  // workers before it are in sum_ (or not in this round)
  int summed_ = 0;               // gradients in sum_
  int alive_ = 0;                // workers not lost
  double decode_s_ = 0;
  std::int64_t iteration_ = 0;
};

// The ssgd worker is the generic gradient worker.
using SsgdWorker = GradientWorker;

}  // namespace psgd
