#include "psgd/ssgd.h"

#include <algorithm>

#include "codecs/payload_io.h"
#include "core/error.h"

namespace psgd {

SsgdServer::SsgdServer(Schedule schedule, ServerContext context)
    : schedule_(schedule),
      ctx_(context),
      optimiser_(ctx_.sgd, ctx_.parameters.size()),
      downlink_(make_codec(ctx_.downlink)),
      sum_(ctx_.parameters.size(), 0.0f),
      slots_(static_cast<std::size_t>(schedule.node_count),
             std::vector<float>(ctx_.parameters.size(), 0.0f)),
      pending_(static_cast<std::size_t>(schedule.node_count)) {
  PSGD_CHECK(ctx_.clock != nullptr, "ssgd server needs a clock");
  for (int w = 0; w < schedule_.node_count; ++w)
    uplink_.push_back(make_codec(ctx_.uplink));
}

void SsgdServer::on_start(Outbox& out) {
  broadcast_parameters(out);
}

void SsgdServer::broadcast_parameters(Outbox& out) {
  auto message = std::make_shared<const Message>(
      Params{.iteration = iteration_, .values = downlink_->encode(ctx_.parameters)});
  for (NodeId w = 0; w < schedule_.node_count; ++w)
    out.push_back({w, message});
}

void SsgdServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const auto* g = std::get_if<Gradient>(&message);
  if (g == nullptr) {
    throw ProtocolError(fmt::format("ssgd server: unexpected {} message from worker {}",
                                    type_name(type_of(message)), from));
  }
  if (from < 0 || from >= schedule_.node_count) {
    throw ProtocolError(fmt::format("ssgd server: gradient from unknown worker {}", from));
  }
  if (finished()) {
    throw ProtocolError(
        fmt::format("ssgd server: worker {} sent a gradient after the last "
                    "iteration",
                    from));
  }
  if (g->iteration != iteration_) {
    throw ProtocolError(
        fmt::format("ssgd server: worker {} sent a gradient for iteration {} during iteration {}",
                    from, g->iteration, iteration_));
  }
  Pending& p = pending_[static_cast<std::size_t>(from)];
  if (p.received) {
    throw ProtocolError(fmt::format(
        "ssgd server: worker {} sent a second gradient for iteration {}", from, iteration_));
  }
  Stopwatch sw(*ctx_.clock);
  // Each worker's gradient is decoded into its own slot and the slots are summed in worker order
  // when the round closes: float addition is not associative, and summing in arrival order would
  // make two runs with the same seed differ in the last bits.
  uplink_[static_cast<std::size_t>(from)]->decode(g->values,
                                                  slots_[static_cast<std::size_t>(from)]);
  decode_s_ += sw.seconds();
  p.received = true;
  p.arrival = ctx_.clock->now();
  p.report = WorkerReport{.iteration = g->iteration,
                          .loss = g->loss,
                          .samples = g->samples,
                          .times = g->times,
                          .held_s = 0,
                          .payload_bytes = g->values.bytes.size(),
                          .compression_error = g->compression_error};
  if (++received_ == schedule_.node_count) close_round(out);
}

std::span<const float> SsgdServer::mean_gradient() {
  if (slots_.size() == 1) return slots_[0];
  const float inv = 1.0f / static_cast<float>(slots_.size());
  float* sum = sum_.data();
  const std::size_t n = sum_.size();
  std::copy(slots_[0].begin(), slots_[0].end(), sum_.begin());
  for (std::size_t w = 1; w < slots_.size(); ++w) {
    const float* src = slots_[w].data();
    for (std::size_t i = 0; i < n; ++i)
      sum[i] += src[i];
  }
  for (std::size_t i = 0; i < n; ++i)
    sum[i] *= inv;
  return sum_;
}

void SsgdServer::close_round(Outbox& out) {
  Stopwatch sw(*ctx_.clock);
  optimiser_.step(ctx_.parameters, mean_gradient());
  const double apply_s = sw.seconds();
  ++iteration_;

  RoundStats stats{
      .iteration = iteration_, .gradients = received_, .decode_s = decode_s_, .apply_s = apply_s};
  if (!finished()) broadcast_parameters(out);
  const double reply = ctx_.clock->now();
  for (std::size_t w = 0; w < pending_.size(); ++w) {
    Pending& p = pending_[w];
    stats.train_loss += p.report.loss / received_;
    stats.samples += p.report.samples;
    p.report.held_s = reply - p.arrival;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), p.report);
    p = Pending{};
  }
  if (ctx_.observer) ctx_.observer->on_round(stats);
  received_ = 0;
  decode_s_ = 0;
}

SsgdWorker::SsgdWorker(WorkerContext context)
    : ctx_(context), uplink_(make_codec(ctx_.uplink)), downlink_(make_codec(ctx_.downlink)) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "ssgd worker needs a learner "
             "and a clock");
}

WorkerAction SsgdWorker::on_message(const Message& message, Outbox&) {
  const auto* p = std::get_if<Params>(&message);
  if (p == nullptr) {
    throw ProtocolError(
        fmt::format("ssgd worker: unexpected {} message", type_name(type_of(message))));
  }
  if (p->iteration <= iteration_) {
    throw ProtocolError(fmt::format("ssgd worker: parameters of iteration {} arrived after {}",
                                    p->iteration, iteration_));
  }
  if (waiting_since_ >= 0) times_.wait_s = ctx_.clock->now() - waiting_since_;
  Stopwatch sw(*ctx_.clock);
  downlink_->decode(p->values, ctx_.learner->parameters());
  times_.decode_s = sw.seconds();
  iteration_ = p->iteration;
  return {.compute = true};
}

WorkerAction SsgdWorker::compute_step(Outbox& out) {
  PSGD_CHECK(iteration_ >= 0, "ssgd worker asked to compute before any parameters arrived");
  Stopwatch sw(*ctx_.clock);
  const StepStats step = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  sw.restart();
  Payload payload = uplink_->encode(ctx_.learner->gradients());
  times_.encode_s = sw.seconds();
  // The compression error comes free from codecs that know it (plain, error feedback); measuring
  // it otherwise costs a decode and two norms, about one more encode, so it is sampled every
  // kErrorSampleEvery iterations and left negative ("not measured") in between.
  double compression_error = uplink_->last_stats().compression_error;
  if (compression_error < 0 && done_ % kErrorSampleEvery == 0) {
    scratch_.resize(ctx_.learner->gradients().size());
    uplink_->decode(payload, scratch_);
    compression_error = relative_error(ctx_.learner->gradients(), scratch_);
  }
  out.push_back(
      {kServer, std::make_shared<const Message>(Gradient{.iteration = iteration_,
                                                         .values = std::move(payload),
                                                         .loss = step.loss,
                                                         .samples = step.samples,
                                                         .times = times_,
                                                         .compression_error = compression_error})});
  times_ = PhaseTimes{};
  waiting_since_ = ctx_.clock->now();
  ++done_;
  return {.compute = false};
}

}  // namespace psgd
