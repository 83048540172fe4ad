#include "psgd/gradient_worker.h"

#include "codecs/payload_io.h"
#include "core/error.h"
#include "core/state_io.h"
#include "psgd/common.h"

namespace psgd {

GradientWorker::GradientWorker(WorkerContext context)
    : ctx_(context), uplink_(make_codec(ctx_.uplink)), downlink_(make_codec(ctx_.downlink)) {
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

WorkerAction GradientWorker::on_message(const Message& message, Outbox&) {
  iteration_ = install_params(message, iteration_, waiting_since_, *downlink_, *ctx_.learner,
                              *ctx_.clock, times_);
  return {.compute = true};
}

WorkerAction GradientWorker::compute_step(Outbox& out) {
  PSGD_CHECK(iteration_ >= 0, "worker asked to compute before any parameters arrived");
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
  out.push_back({kServer, payloads_.keep(Gradient{
                              .iteration = iteration_,
                              .values = std::move(payload),
                              .loss = step.loss,
                              .samples = step.samples,
                              .times = times_,
                              .compression_error = compression_error,
                              .buffers = std::vector<float>(ctx_.learner->buffers().begin(),
                                                            ctx_.learner->buffers().end())})});
  times_ = PhaseTimes{};
  waiting_since_ = ctx_.clock->now();
  ++done_;
  return {.compute = false};
}

}  // namespace psgd
