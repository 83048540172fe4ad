#pragma once
// Gradient coding (Tandon, Lei, Dimakis, Karampatziakis 2017, "Gradient Coding: Avoiding
// Stragglers in Distributed Learning"), fractional-repetition scheme, on synchronous SGD, and its
// baseline, naive duplication.
//
// Layout (nn::place_fractional_repetition, --redundancy r with r | n): the training set is cut
// into n blocks; worker w belongs to group w / r, and the r workers of group j all hold blocks
// j·r .. j·r + r − 1. Each iteration every worker computes one batch gradient per block it holds,
// each block with its own batch order seeded by (seed, block) only (nn::TrainerOptions
// block_ids), so all replicas of a block compute the same gradient on the same parameters.
//
//   gc:  a worker sends ONE vector, the sum of its r block gradients (its group's sum). The
//        server needs one message per group: the sum of the group sums is the exact sum of all n
//        block gradients. Any n − r + 1 workers contain one of every group, so a round tolerates
//        r − 1 stragglers anywhere, and more when they fall in different groups.
//   ndc: a worker sends its r block gradients in full, concatenated in block order (r times the
//        bytes); the server uses the first copy of each block. Same tolerance, r× the traffic.
//
// The round closes as soon as every group is covered, without waiting for the other replicas;
// the update is the mean of the n block gradients (the sum divided by n), so a round is one SGD
// step on n batches exactly as plain ssgd's. Replies, late gradients and resynchronisation follow
// ssgd's backup-worker rule (psgd/ssgd.h): workers whose gradient of the round arrived get the
// new parameters when it closes (redundant copies are reported with dropped = true); a gradient
// that arrives after its round closed is dropped and its worker sent the current parameters.
//
// Payloads are fp32 (the plain codec): the coding is in what is summed, not in how it is sent.
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/common.h"
#include "psgd/context.h"

namespace psgd {

struct GcOptions {
  int redundancy = 2;  // r: workers per group (and blocks per worker); must divide node_count
  bool naive = false;  // ndc: send every block gradient in full instead of the group's sum
};

// The group of `worker` in the fractional-repetition layout (as nn::place_fractional_repetition).
inline int gc_group(int worker, int redundancy) {
  return worker / redundancy;
}

class GcServer final : public ServerRole {
 public:
  GcServer(Schedule schedule, ServerContext context, GcOptions options);
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }

  // Checkpoint, as ssgd's (psgd/ssgd.h): iteration, optimiser, each worker's gradient count;
  // a worker draws one batch per block it holds (r) for each gradient it sends.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;
  std::int64_t worker_batches(NodeId worker) const override;

 private:
  void close_round(Outbox& out);
  void drop_late(NodeId from, const Gradient& g, Outbox& out);

  struct Pending {
    bool received = false;
    bool used = false;  // the first of its group this round
    double arrival = 0;
    WorkerReport report;
  };

  Schedule schedule_;
  ServerContext ctx_;
  GcOptions options_;
  int groups_;
  std::unique_ptr<Optimizer> optimiser_;
  std::unique_ptr<Codec> downlink_;
  PayloadRecycler replies_;                // the parameters sent when a round closes
  std::unique_ptr<Codec> uplink_;          // fp32 decoder, stateless
  std::vector<std::vector<float>> slots_;  // each group's sum of block gradients this round
  std::vector<bool> covered_;
  std::vector<float> blocks_;  // ndc: one message's r block gradients
  std::vector<float> update_;  // the round's mean block gradient
  std::vector<Pending> pending_;
  std::vector<std::int64_t> last_sent_;
  std::vector<std::int64_t> gradients_;  // received from each worker (used, redundant or late)
  WorkerBuffers buffers_;                // the model's buffers: the mean of the workers' latest
  int covered_count_ = 0;
  double decode_s_ = 0;
  std::int64_t iteration_ = 0;
};

// The worker: on Params, computes one batch gradient per block it holds (r calls of the
// learner's compute_gradient(), which a block-stream learner answers block by block) and sends
// their sum (gc) or their concatenation (ndc), tagged with the iteration of the parameters.
class GcWorker final : public WorkerRole {
 public:
  GcWorker(WorkerContext context, GcOptions options);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return done_; }

 private:
  WorkerContext ctx_;
  GcOptions options_;
  std::unique_ptr<Codec> uplink_;
  std::unique_ptr<Codec> downlink_;
  std::vector<float> coded_;  // gc: the sum; ndc: the r gradients back to back
  PayloadRecycler payloads_;  // the uplink payload, reused between iterations
  std::int64_t iteration_ = -1;
  std::int64_t done_ = 0;
  double waiting_since_ = -1;
  PhaseTimes times_;
};

}  // namespace psgd
