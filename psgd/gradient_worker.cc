#include "psgd/gradient_worker.h"

#include "codecs/payload_io.h"
#include "core/error.h"
#include "core/state_io.h"
#include "psgd/common.h"

namespace psgd {

GradientWorker::GradientWorker(WorkerContext context, GradientWorkerOptions options)
    : ctx_(context),
      options_(options),
      uplink_(make_codec(ctx_.uplink)),
      downlink_(make_codec(ctx_.downlink)) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "gradient worker needs a learner and a clock");
}

std::vector<std::uint8_t> GradientWorker::snapshot() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put<std::int64_t>(done_);
  w.put_bytes(uplink_->state());
  return out;
}

void GradientWorker::restore(std::span<const std::uint8_t> state) {
  if (state.empty()) return;  // a fresh worker
  StateReader r(state, "gradient worker state");
  const auto done = r.get<std::int64_t>();
  const auto codec = r.get_bytes();
  r.expect_end();
  if (done < 0) r.fail("a negative gradient count");
  uplink_->restore_state(codec);
  done_ = done;
}

WorkerAction GradientWorker::on_message(const Message& message, Outbox& out) {
  if (compute_asked_ && sent_for_ == iteration_ && iteration_ >= 0) {
    // Overlap: the parameters overtook the step asked for ahead, which must still compute on the
    // current ones (the delay is exactly one step in every driver); installed after it.
    overtaken_ = std::make_unique<Message>(message);
    return {.compute = false};
  }
  iteration_ = install_params(message, iteration_, waiting_since_, *downlink_, *ctx_.learner,
                              *ctx_.clock, times_);
  if (held_) {
    // Overlap: the gradient computed ahead answers these parameters.
    const std::int64_t answers = std::get<Gradient>(*held_).iteration;
    if (answers != iteration_) {
      throw ProtocolError(fmt::format(
          "worker (--overlap): parameters of iteration {} arrived, but the gradient computed "
          "ahead answers iteration {}",
          iteration_, answers));
    }
    return send(std::move(held_), out);
  }
  compute_asked_ = true;
  return {.compute = true};
}

WorkerAction GradientWorker::send(std::shared_ptr<const Message> gradient, Outbox& out) {
  held_.reset();
  out.push_back({kServer, std::move(gradient)});
  sent_for_ = iteration_;
  ++done_;
  compute_asked_ = iteration_ + 1 < options_.overlap_iterations;
  return {.compute = compute_asked_};
}

WorkerAction GradientWorker::compute_step(Outbox& out) {
  PSGD_CHECK(iteration_ >= 0, "worker asked to compute before any parameters arrived");
  compute_asked_ = false;
  // Overlap: this iteration's gradient is already sent, so this one is computed ahead for the
  // next (on the current parameters) and held until that iteration's parameters arrive.
  const bool ahead = sent_for_ == iteration_;
  Stopwatch sw(*ctx_.clock);
  const StepStats step = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  sw.restart();
  Payload payload = payloads_.take();
  uplink_->encode_into(ctx_.learner->gradients(), payload);
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
  auto gradient =
      payloads_.keep(Gradient{.iteration = ahead ? iteration_ + 1 : iteration_,
                              .values = std::move(payload),
                              .loss = step.loss,
                              .samples = step.samples,
                              .times = times_,
                              .compression_error = compression_error,
                              .buffers = std::vector<float>(ctx_.learner->buffers().begin(),
                                                            ctx_.learner->buffers().end())});
  times_ = PhaseTimes{};
  waiting_since_ = ctx_.clock->now();
  if (!ahead) return send(std::move(gradient), out);
  held_ = std::move(gradient);
  if (overtaken_) {
    const std::unique_ptr<Message> params = std::move(overtaken_);
    return on_message(*params, out);
  }
  return {.compute = false};
}

}  // namespace psgd
