#include "psgd/allreduce_overlap.h"

#include <fmt/format.h>

#include <algorithm>

#include "codecs/factory.h"
#include "codecs/payload_io.h"
#include "core/error.h"
#include "psgd/allreduce.h"
#include "psgd/common.h"
#include "psgd/job.h"

namespace psgd {

namespace {

// Where the first bucket closes, in bytes.
std::size_t first_cap(std::size_t total, const BucketOptions& options) {
  const auto share = static_cast<std::size_t>(options.first_bucket_share *
                                              static_cast<double>(total * sizeof(float)));
  return std::min(options.first_bucket_bytes, std::max(share, sizeof(float)));
}

}  // namespace

std::vector<std::pair<std::size_t, std::size_t>> make_buckets(std::size_t total,
                                                              std::span<const std::size_t> cuts,
                                                              const BucketOptions& options) {
  std::vector<std::pair<std::size_t, std::size_t>> buckets;
  std::size_t end = total;  // of the bucket being filled
  std::size_t cap = first_cap(total, options);
  for (std::size_t cut : cuts) {
    // The layer [cut, previous cut) joins the bucket; the bucket closes once it reaches the cap.
    if (cut == 0 || cut >= end) continue;
    if ((end - cut) * sizeof(float) >= cap) {
      buckets.emplace_back(cut, end);
      end = cut;
      cap = options.bucket_bytes;
    }
  }
  if (end > 0 || buckets.empty()) buckets.emplace_back(0, end);
  return buckets;
}

BucketOptions bucket_options(const StrategyJob& job) {
  const auto bytes = std::max<std::size_t>(
      sizeof(float), static_cast<std::size_t>(job.allreduce_bucket_mb() * 1e6));
  return {.first_bucket_bytes = std::min(BucketOptions{}.first_bucket_bytes, bytes),
          .bucket_bytes = bytes};
}

std::string describe_buckets(std::size_t total, std::span<const std::size_t> cuts,
                             const BucketOptions& options) {
  const auto mb = [](std::size_t values) {
    return static_cast<double>(values * sizeof(float)) / 1e6;
  };
  const auto buckets = make_buckets(total, cuts, options);
  if (buckets.size() == 1) {
    if (cuts.empty()) {
      return "allreduce --overlap: this model's backward pass cannot pause between layers (a "
             "TorchScript model, or one layer), so its gradient is one bucket and nothing "
             "overlaps; the run is that of allreduce without --overlap";
    }
    return fmt::format(
        "allreduce --overlap: the gradient ({:.2f} MB) is one bucket: the layers after the first "
        "hold {:.3g} MB, less than the first bucket's {:.3g} MB, and a layer is never split; "
        "nothing overlaps (the run is that of allreduce without --overlap)",
        mb(total), mb(total - cuts.back()), static_cast<double>(first_cap(total, options)) / 1e6);
  }
  std::string sizes;
  for (const auto& [begin, end] : buckets)
    sizes += fmt::format("{}{:.3g} MB", sizes.empty() ? "" : ", ", mb(end - begin));
  return fmt::format(
      "allreduce --overlap: the gradient ({:.2f} MB) is summed in {} buckets, in the order "
      "backward makes them final: {}; each bucket's ring starts while backward computes the "
      "next (--bucket_mb sets their size)",
      mb(total), buckets.size(), sizes);
}

BucketedAllreduceWorker::BucketedAllreduceWorker(WorkerContext context, Schedule schedule,
                                                 const OptimizerSpec& optimizer, RingOptions ring,
                                                 std::unique_ptr<AllreduceCompression> compression,
                                                 BucketOptions buckets)
    : ctx_(context),
      schedule_(schedule),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      compression_(compression ? std::move(compression)
                               : find_allreduce_compression("plain")->make(
                                     AllreduceCompressionSpec{.world = schedule.node_count})),
      ring_options_(ring),
      bucket_options_(buckets) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr && ctx_.collective == nullptr,
             "bucketed allreduce worker needs a learner, a clock and the ring");
  PSGD_CHECK(compression_->bucketed(), "bucketed allreduce worker: this compression is not");
  ring_options_.half = compression_->half();
}

void BucketedAllreduceWorker::make_rings() {
  const std::size_t total = ctx_.learner->gradients().size();
  const std::vector<std::size_t> layers = ctx_.learner->backward_cuts();
  buckets_ = make_buckets(total, layers, bucket_options_);
  // Backward pauses after every layer once the first bucket is final, not only at the buckets'
  // starts: between two pieces the driver delivers what arrived, and every delivery moves a
  // started bucket's ring one hop on (a ring of n workers needs 2(n - 1) hops, each a turn of the
  // receiving worker). Before that no ring runs, so a pause would only cost a hand-off; a
  // gradient of one bucket is computed in one piece.
  cuts_.clear();
  for (std::size_t cut : layers)
    if (cut <= buckets_.front().first) cuts_.push_back(cut);
  for (const auto& [begin, end] : buckets_) {
    rings_.push_back(std::make_unique<RingAllreduce>(ctx_.id, schedule_.node_count, ring_options_));
    rings_.back()->set_window(begin, total);
  }
}

void BucketedAllreduceWorker::restore(std::span<const std::uint8_t> state) {
  if (!state.empty()) optimiser_->restore(state);
}

WorkerAction BucketedAllreduceWorker::on_message(const Message& message, Outbox& out) {
  if (const auto* p = std::get_if<Params>(&message)) {
    // 0, or the checkpoint's iteration on a resumed run
    iteration_ = start_params("allreduce", *p, started_, schedule_.total_iterations(),
                              ctx_.downlink, *ctx_.learner);
    // Here, on the event thread and before the first step: compute_detached() reads cuts_.
    if (buckets_.empty()) make_rings();
    return {.compute = true, .detached = true};
  }
  if (const auto* chunk = std::get_if<RingChunk>(&message)) {
    if (buckets_.empty()) make_rings();  // a peer started before this worker's first step
    if (chunk->round < 0) {
      throw ProtocolError(
          fmt::format("allreduce worker {}: a chunk of round {}", ctx_.id, chunk->round));
    }
    const auto b =
        static_cast<std::size_t>(chunk->round % static_cast<std::int64_t>(rings_.size()));
    rings_[b]->on_chunk(*chunk, out);
    if (reducing_ && !computing_ && all_done()) return finish_iteration(out);
    return {};
  }
  throw ProtocolError(fmt::format("allreduce worker {}: unexpected {} message", ctx_.id,
                                  type_name(type_of(message))));
}

// The detached part of a step: the forward pass (first piece) and the backward pass to the next
// cut. It touches the learner and piece_ only; every flag the message handlers read (computing_,
// reducing_, started_buckets_) changes in compute_step(), on the event thread, after it. So while
// it runs on_message() finds the step either not begun (reducing_ false: nothing to finish) or
// in progress (computing_ true), and a chunk only moves a ring on: rings sum in their own buffers
// (AllreduceCompression::bucket_buffer), never in the gradient being computed.
void BucketedAllreduceWorker::compute_detached() {
  PSGD_CHECK(!piece_.ran, "allreduce worker: a second detached computation before compute_step");
  Stopwatch sw(*ctx_.clock);
  if (!computing_) piece_.stats = ctx_.learner->begin_gradient(cuts_);
  piece_.ready = ctx_.learner->continue_backward();
  piece_.seconds = sw.seconds();
  piece_.ran = true;
}

WorkerAction BucketedAllreduceWorker::compute_step(Outbox& out) {
  PSGD_CHECK(started_ && (computing_ || !reducing_),
             "allreduce worker asked to compute out of turn");
  if (buckets_.empty()) make_rings();
  if (!piece_.ran) compute_detached();  // a driver that does not detach
  piece_.ran = false;
  if (!computing_) {
    step_ = piece_.stats;
    computing_ = true;
    reducing_ = true;
    started_buckets_ = 0;
  }
  times_.compute_s += piece_.seconds;
  start_ready(piece_.ready, out);
  if (piece_.ready > 0) return {.compute = true, .detached = true};
  computing_ = false;
  reduce_start_ = ctx_.clock->now();
  PSGD_CHECK(started_buckets_ == buckets_.size(), "allreduce worker: a bucket was not started");
  if (all_done()) return finish_iteration(out);
  return {};
}

void BucketedAllreduceWorker::start_ready(std::size_t ready, Outbox& out) {
  const auto g = ctx_.learner->gradients();
  const auto rounds = static_cast<std::int64_t>(buckets_.size());
  while (started_buckets_ < buckets_.size() && buckets_[started_buckets_].first >= ready) {
    const auto [begin, end] = buckets_[started_buckets_];
    const std::span<float> buffer = compression_->bucket_buffer(g, begin, end);
    rings_[started_buckets_]->start(
        iteration_ * rounds + static_cast<std::int64_t>(started_buckets_),
        buffer.subspan(begin, end - begin), out);
    ++started_buckets_;
  }
}

bool BucketedAllreduceWorker::all_done() const {
  if (started_buckets_ < buckets_.size()) return false;
  for (const auto& ring : rings_)
    if (!ring->done()) return false;
  return true;
}

WorkerAction BucketedAllreduceWorker::finish_iteration(Outbox& out) {
  reducing_ = false;
  times_.wait_s = ctx_.clock->now() - reduce_start_;
  std::uint64_t bytes = 0;
  for (const auto& ring : rings_)
    bytes += ring->bytes_sent();
  Stopwatch sw(*ctx_.clock);
  auto params = ctx_.learner->parameters();
  update_.resize(params.size());
  compression_->finish(update_);
  optimiser_->step(params, update_, iteration_);
  times_.apply_s = sw.seconds();
  ++iteration_;
  AllreduceReport report{.iteration = iteration_,
                         .loss = step_.loss,
                         .samples = step_.samples,
                         .times = times_,
                         .peer_bytes = bytes};
  report.multicast_bytes = bytes;
  times_ = PhaseTimes{};
  if (send_iteration_report(std::move(report), *ctx_.learner, schedule_, ctx_.id == 0, out)) {
    return {.compute = true, .detached = true};
  }
  return {};
}

}  // namespace psgd
