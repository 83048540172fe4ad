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
// An iteration. A step's first piece draws the batch, runs the forward pass and the backward pass
// of the last layer (Learner::begin_gradient, continue_backward); each further piece runs
// backward through the next layer. Each piece is a detached computation (psgd/strategy.h,
// WorkerRole::compute_detached): the TCP client runs it on its compute thread while its event
// thread goes on delivering ring hops and heartbeats, and the simulator runs it on the worker's
// virtual clock while the worker handles the messages that arrive meanwhile at their arrival
// time (a core of its own). After each piece compute_step(), on the event thread, starts the
// ring of every bucket now final and asks for the next piece; so the first buckets' rings run
// while backward computes the rest, as with DDP's communication thread. Once every bucket's ring
// is done the worker applies the mean with its optimiser and reports, exactly as AllreduceWorker.
// A driver that does not detach (the in-memory tests) calls compute_step() alone, which then
// computes the piece itself: the same bits, rings moving only between pieces.
//
// Bit-identical to allreduce without --overlap. Each bucket's ring sums its values in the
// segments one ring over the whole gradient would (RingAllreduce::set_window): the same ranks, the
// same order, the same fp16 rounding points; the staged backward gives the same gradient bits as
// one backward pass; the compression's arithmetic per value is the same (bucket_buffer). So the
// parameters after every iteration equal those of the same job without --overlap, bit for bit.
//
// The role owns no thread: the driver does (psgd/strategy.h). What it cannot do, and the job
// refuses in one line: PowerSGD (its matrices need whole layers summed in two rounds),
// the Gloo backend (a blocking call), and --allreduce_on_loss shrink (a ring re-formed mid
// iteration would have to re-form every bucket's). Checkpoints: the worker's state is its
// optimiser's, as without --overlap (the checkpoints are interchangeable).
#include <cstddef>
#include <memory>
#include <span>
#include <string>
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
  // The first bucket also closes once it holds this share of the gradient, so that a model
  // smaller than DDP's 1 MiB (the CNN: 0.86 MB, 93 % of it in its first dense layer) is not one
  // bucket with nothing to overlap: the last layers' ring then runs while backward computes the
  // convolutions. 1: DDP's rule alone.
  double first_bucket_share = 0.25;
};

struct StrategyJob;

// The job's caps: DDP's 1 MiB for the first bucket and --bucket_mb for the others; a --bucket_mb
// below 1 MiB caps the first one too.
BucketOptions bucket_options(const StrategyJob& job);

// The buckets of a gradient of `total` values with backward cuts `cuts` (decreasing), in the order
// backward makes them final: [begin, end) ranges, the first ending at `total`, the last beginning
// at 0.
std::vector<std::pair<std::size_t, std::size_t>> make_buckets(std::size_t total,
                                                              std::span<const std::size_t> cuts,
                                                              const BucketOptions& options);

// What --overlap does with such a gradient, in one line for the job's start (init_server and
// --simulate print it): the buckets' sizes in the order their rings start, or why there is one
// bucket and so nothing to overlap.
std::string describe_buckets(std::size_t total, std::span<const std::size_t> cuts,
                             const BucketOptions& options);

class BucketedAllreduceWorker final : public WorkerRole {
 public:
  // `compression` must be bucketed() (plain or fp16); null: plain.
  BucketedAllreduceWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
                          RingOptions ring, std::unique_ptr<AllreduceCompression> compression,
                          BucketOptions buckets);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  // Each piece of the staged backward (and the forward pass with the first) may run detached
  // (psgd/strategy.h): compute_detached() computes, compute_step() starts the rings of the
  // buckets it made final.
  void compute_detached() override;
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
  // What compute_detached() hands to compute_step(): written by the one, read by the other.
  struct Piece {
    bool ran = false;       // computed, not yet taken by compute_step()
    StepStats stats;        // of begin_gradient, on a step's first piece
    std::size_t ready = 0;  // continue_backward(): the gradient is final from here on
    double seconds = 0;
  } piece_;
  std::vector<float> update_;
  StepStats step_;
  PhaseTimes times_;
  double reduce_start_ = 0;
};

}  // namespace psgd
