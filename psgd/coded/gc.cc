#include "psgd/coded/gc.h"

#include <cereal/types/vector.hpp>

#include <algorithm>

#include "core/error.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {
namespace {

CodecSpec fp32() {
  return CodecSpec{.name = "plain", .error_feedback = "off"};
}

void check_layout(int node_count, const GcOptions& o) {
  PSGD_CHECK(o.redundancy >= 1 && o.redundancy <= node_count && node_count % o.redundancy == 0,
             "gradient coding: redundancy {} does not divide {} workers", o.redundancy, node_count);
}

}  // namespace

GcServer::GcServer(Schedule schedule, ServerContext context, GcOptions options)
    : schedule_(schedule),
      ctx_(context),
      options_(options),
      groups_(schedule.node_count / std::max(1, options.redundancy)),
      optimiser_(make_optimizer(ctx_.optimizer, ctx_.parameters.size())),
      downlink_(make_codec(ctx_.downlink)),
      uplink_(make_codec(fp32())),
      slots_(static_cast<std::size_t>(groups_), std::vector<float>(ctx_.parameters.size(), 0.0f)),
      covered_(static_cast<std::size_t>(groups_), false),
      update_(ctx_.parameters.size(), 0.0f),
      pending_(static_cast<std::size_t>(schedule.node_count)),
      last_sent_(static_cast<std::size_t>(schedule.node_count), 0),
      gradients_(static_cast<std::size_t>(schedule.node_count), 0),
      buffers_(schedule.node_count, ctx_.buffers) {
  PSGD_CHECK(ctx_.clock != nullptr, "gc server needs a clock");
  check_layout(schedule_.node_count, options_);
  if (options_.naive) blocks_.resize(ctx_.parameters.size() * options_.redundancy);
}

namespace {
constexpr std::uint32_t kGcStateVersion = 1;
}

std::vector<std::uint8_t> GcServer::snapshot() const {
  const bool open =
      std::any_of(pending_.begin(), pending_.end(), [](const Pending& p) { return p.received; });
  PSGD_CHECK(!open, "gc snapshot with gradients of an open round");
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kGcStateVersion, static_cast<std::int32_t>(schedule_.node_count), iteration_,
     optimiser_->snapshot(), gradients_);
  return bytes;
}

void GcServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::int64_t iteration = 0;
  std::vector<std::uint8_t> optimiser;
  std::vector<std::int64_t> gradients;
  ar(version, nodes, iteration, optimiser, gradients);
  if (version != kGcStateVersion || nodes != schedule_.node_count ||
      gradients.size() != gradients_.size() || iteration < 0 ||
      iteration > schedule_.total_iterations() || ar.remaining() != 0) {
    throw ConfigError(fmt::format(
        "gc checkpoint state does not fit this job (version {}, {} workers, iteration {}; this "
        "job: {} workers, {} iterations)",
        version, nodes, iteration, schedule_.node_count, schedule_.total_iterations()));
  }
  try {
    optimiser_->restore(optimiser);
  } catch (const ProtocolError& e) {
    throw ConfigError(fmt::format("gc checkpoint state does not fit this job: {}", e.what()));
  }
  iteration_ = iteration;
  gradients_ = std::move(gradients);
  std::fill(last_sent_.begin(), last_sent_.end(), iteration_);
}

std::int64_t GcServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return gradients_[static_cast<std::size_t>(worker)] * options_.redundancy;
}

void GcServer::on_start(Outbox& out) {
  broadcast(params_message(iteration_, *downlink_, ctx_.parameters), schedule_.node_count, out);
}

void GcServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const char* name = options_.naive ? "ndc" : "gc";
  const Gradient& g = expect_gradient(name, from, schedule_.node_count, message);
  const auto w = static_cast<std::size_t>(from);
  if (g.iteration != last_sent_[w]) {
    throw ProtocolError(fmt::format(
        "{} server: worker {} sent a gradient for iteration {} but was last sent iteration {}",
        name, from, g.iteration, last_sent_[w]));
  }
  ++gradients_[w];
  buffers_.receive(from, g.buffers);
  if (g.iteration < iteration_) {
    drop_late(from, g, out);
    return;
  }
  if (finished()) {
    throw ProtocolError(
        fmt::format("{} server: worker {} sent a gradient after the last iteration", name, from));
  }
  Pending& p = pending_[w];
  if (p.received) {
    throw ProtocolError(fmt::format("{} server: worker {} sent a second gradient for iteration {}",
                                    name, from, iteration_));
  }
  p.received = true;
  p.arrival = ctx_.clock->now();
  p.report = report_of(g);
  const auto group = static_cast<std::size_t>(gc_group(from, options_.redundancy));
  if (covered_[group]) {  // a replica of its group already delivered this round's sum
    p.report.dropped = true;
    return;
  }
  Stopwatch sw(*ctx_.clock);
  std::vector<float>& slot = slots_[group];
  if (!options_.naive) {
    uplink_->decode(g.values, slot);
  } else {
    // The first copy of each of the group's r blocks, summed in block order.
    uplink_->decode(g.values, blocks_);
    const std::size_t d = slot.size();
    std::copy(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(d), slot.begin());
    for (int k = 1; k < options_.redundancy; ++k) {
      const float* src = blocks_.data() + static_cast<std::size_t>(k) * d;
      for (std::size_t i = 0; i < d; ++i)
        slot[i] += src[i];
    }
  }
  decode_s_ += sw.seconds();
  p.used = true;
  covered_[group] = true;
  if (++covered_count_ == groups_) close_round(out);
}

void GcServer::drop_late(NodeId from, const Gradient& g, Outbox& out) {
  WorkerReport report = report_of(g);
  report.dropped = true;
  report.staleness = iteration_ - g.iteration;
  if (ctx_.observer) ctx_.observer->on_worker(from, report);
  if (finished()) return;
  last_sent_[static_cast<std::size_t>(from)] = iteration_;
  out.push_back({from, params_message(iteration_, *downlink_, ctx_.parameters)});
}

void GcServer::close_round(Outbox& out) {
  Stopwatch sw(*ctx_.clock);
  // Σ over groups of the group sums = Σ over the n blocks; the update is their mean.
  optimiser_->step(ctx_.parameters,
                   scaled_sum_of_slots(slots_, covered_,
                                       1.0f / static_cast<float>(schedule_.node_count), update_),
                   iteration_);
  buffers_.update();
  const double apply_s = sw.seconds();
  ++iteration_;

  int received = 0;
  RoundStats stats{
      .iteration = iteration_, .gradients = groups_, .decode_s = decode_s_, .apply_s = apply_s};
  std::shared_ptr<const Message> reply;
  if (!finished()) reply = params_message(iteration_, *downlink_, ctx_.parameters, replies_);
  const double now = ctx_.clock->now();
  for (std::size_t w = 0; w < pending_.size(); ++w) {
    Pending& p = pending_[w];
    if (!p.received) continue;
    ++received;
    if (reply) {
      out.push_back({static_cast<NodeId>(w), reply});
      last_sent_[w] = iteration_;
    }
    if (p.used) {
      stats.train_loss += p.report.loss / groups_;
      stats.samples += p.report.samples;
    }
    p.report.held_s = now - p.arrival;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), p.report);
    p = Pending{};
  }
  stats.missing = schedule_.node_count - received;
  if (ctx_.observer) ctx_.observer->on_round(stats);
  std::fill(covered_.begin(), covered_.end(), false);
  covered_count_ = 0;
  decode_s_ = 0;
}

GcWorker::GcWorker(WorkerContext context, GcOptions options)
    : ctx_(context),
      options_(options),
      uplink_(make_codec(fp32())),
      downlink_(make_codec(ctx_.downlink)) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "gc worker needs a learner and a clock");
  PSGD_CHECK(options_.redundancy >= 1, "gc worker: redundancy {}", options_.redundancy);
}

WorkerAction GcWorker::on_message(const Message& message, Outbox&) {
  iteration_ = install_params(message, iteration_, waiting_since_, *downlink_, *ctx_.learner,
                              *ctx_.clock, times_);
  return {.compute = true};
}

WorkerAction GcWorker::compute_step(Outbox& out) {
  PSGD_CHECK(iteration_ >= 0, "worker asked to compute before any parameters arrived");
  Stopwatch sw(*ctx_.clock);
  const std::size_t d = ctx_.learner->parameters().size();
  const auto r = static_cast<std::size_t>(options_.redundancy);
  coded_.resize(options_.naive ? r * d : d);
  double loss = 0;
  std::int64_t samples = 0;
  for (std::size_t k = 0; k < r; ++k) {  // one batch of each block, in block order
    const StepStats step = ctx_.learner->compute_gradient();
    loss += step.loss / static_cast<double>(r);
    samples += step.samples;
    const std::span<const float> g = ctx_.learner->gradients();
    PSGD_CHECK_EQ(g.size(), d, "gradient size");
    if (options_.naive) {
      std::copy(g.begin(), g.end(), coded_.begin() + static_cast<std::ptrdiff_t>(k * d));
    } else if (k == 0) {
      std::copy(g.begin(), g.end(), coded_.begin());
    } else {
      for (std::size_t i = 0; i < d; ++i)
        coded_[i] += g[i];
    }
  }
  times_.compute_s = sw.seconds();
  sw.restart();
  Payload payload = payloads_.take();
  uplink_->encode_into(coded_, payload);
  times_.encode_s = sw.seconds();
  out.push_back({kServer, payloads_.keep(Gradient{
                              .iteration = iteration_,
                              .values = std::move(payload),
                              .loss = loss,
                              .samples = samples,
                              .times = times_,
                              .compression_error = 0,
                              .buffers = std::vector<float>(ctx_.learner->buffers().begin(),
                                                            ctx_.learner->buffers().end())})});
  times_ = PhaseTimes{};
  waiting_since_ = ctx_.clock->now();
  ++done_;
  return {.compute = false};
}

}  // namespace psgd
