#pragma once
// allreduce --overlap: the gradient summed in buckets while backward computes the rest, as
// PyTorch DDP does (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data
// Parallel Training", section 3.2.3: gradient bucketing and overlap with backward).
//
// Buckets. The gradient's layers (Learner::backward_cuts(): where backward can pause, each the
// start of a layer's parameters) are grouped from the last layer backwards, in the order
// backward makes them final, into buckets of at least first_bucket_bytes (the first, so that the
// ring starts early; DDP's 1 MiB) and then bucket_bytes (--bucket_mb, DDP's 25 MB) each; a layer
// is never split. A model smaller than the first cap is one bucket: nothing to overlap.
//
// An iteration. compute_step() draws the batch, runs the forward pass and the backward pass of
// the last layer (Learner::begin_gradient, continue_backward), starts the ring of every bucket
// now final and asks for another compute_step(), which runs backward through the next layer, and
// so on. Between two compute steps the driver delivers what arrived (the TCP client runs one turn
// of its event loop, the simulator advances the virtual clock by the step's compute time), so the
// first buckets' rings run while backward computes the rest. A ring moves one hop per turn of
// the receiving worker, and a worker computing a layer takes no turn: the pauses are per layer,
// not per bucket, to give the rings as many turns as the model has layers. Once every bucket's ring
// is done the worker applies the mean with its optimiser and reports, exactly as AllreduceWorker.
//
// Bit-identical to allreduce without --overlap. Each bucket's ring sums its values in the
// segments one ring over the whole gradient would (RingAllreduce::set_window): the same ranks, the
// same order, the same fp16 rounding points; the staged backward gives the same gradient bits as
// one backward pass; the compression's arithmetic per value is the same (bucket_buffer). So the
// parameters after every iteration equal those of the same job without --overlap, bit for bit.
//
// No background thread: the roles stay event-driven (psgd/strategy.h). What it cannot do, and
// the job refuses in one line: PowerSGD (its matrices need whole layers summed in two rounds),
// the Gloo backend (a blocking call), and --allreduce_on_loss shrink (a ring re-formed mid
// iteration would have to re-form every bucket's). Checkpoints: the worker's state is its
// optimiser's, as without --overlap (the checkpoints are interchangeable).
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "core/optimizer.h"
#include "psgd/allreduce_compression.h"
#include "psgd/context.h"
#include "psgd/ring_allreduce.h"
#include "psgd/strategy.h"

namespace psgd {

struct BucketOptions {
  std::size_t first_bucket_bytes = std::size_t{1} << 20;  // DDP's first bucket: 1 MiB
  std::size_t bucket_bytes = 25 * 1000 * 1000;            // --bucket_mb 25 (DDP's bucket_cap_mb)
};

// The buckets of a gradient of `total` values with backward cuts `cuts` (decreasing), in the order
// backward makes them final: [begin, end) ranges, the first ending at `total`, the last beginning
// at 0.
std::vector<std::pair<std::size_t, std::size_t>> make_buckets(std::size_t total,
                                                              std::span<const std::size_t> cuts,
                                                              const BucketOptions& options);

class BucketedAllreduceWorker final : public WorkerRole {
 public:
  // `compression` must be bucketed() (plain or fp16); null: plain.
  BucketedAllreduceWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
                          RingOptions ring, std::unique_ptr<AllreduceCompression> compression,
                          BucketOptions buckets);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return iteration_; }
  // The optimiser's state: that of AllreduceWorker with the same compression.
  std::vector<std::uint8_t> snapshot() const override { return optimiser_->snapshot(); }
  void restore(std::span<const std::uint8_t> state) override;
  std::size_t bucket_count() const { return buckets_.size(); }

 private:
  // The buckets and their rings, from the learner's layers (the same on every worker).
  void make_rings();
  // Starts the rings of the buckets that are final from `ready` on.
  void start_ready(std::size_t ready, Outbox& out);
  bool all_done() const;
  WorkerAction finish_iteration(Outbox& out);

  WorkerContext ctx_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimiser_;
  std::unique_ptr<AllreduceCompression> compression_;
  RingOptions ring_options_;
  BucketOptions bucket_options_;
  std::vector<std::pair<std::size_t, std::size_t>> buckets_;  // empty until the first step
  std::vector<std::size_t> cuts_;                             // every layer's start but 0
  std::vector<std::unique_ptr<RingAllreduce>> rings_;         // one per bucket
  std::size_t started_buckets_ = 0;                           // of this iteration
  bool started_ = false;                                      // Params received
  bool computing_ = false;  // between begin_gradient and the last continue_backward
  bool reducing_ = false;   // this iteration's gradient is being summed
  std::int64_t iteration_ = 0;
  std::vector<float> update_;
  StepStats step_;
  PhaseTimes times_;
  double reduce_start_ = 0;
};

}  // namespace psgd
