#include "psgd/broadcast.h"

#include "codecs/payload_io.h"
#include "core/error.h"
#include "core/state_io.h"
#include "network/frame.h"
#include "psgd/allreduce.h"
#include "psgd/common.h"

namespace psgd {

BroadcastWorker::BroadcastWorker(WorkerContext context, Schedule schedule,
                                 const OptimizerSpec& optimizer)
    : ctx_(context),
      schedule_(schedule),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      codec_(make_codec(ctx_.uplink)),
      slots_(static_cast<std::size_t>(schedule.node_count)),
      all_(static_cast<std::size_t>(schedule.node_count), true) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "broadcast worker needs a learner and a clock");
  for (auto& s : slots_)
    s.assign(ctx_.learner->parameters().size(), 0.0f);
  mean_.assign(ctx_.learner->parameters().size(), 0.0f);
}

WorkerAction BroadcastWorker::on_message(const Message& message, Outbox& out) {
  if (const auto* p = std::get_if<Params>(&message)) {
    // 0, or the checkpoint's iteration on a resumed run
    iteration_ = start_params("broadcast", *p, started_, schedule_.total_iterations(),
                              ctx_.downlink, *ctx_.learner);
    // Peers that started first may have sent gradients of earlier iterations: none can exist.
    payloads_.erase(payloads_.begin(), payloads_.lower_bound(iteration_));
    return {.compute = true};
  }
  const auto* g = std::get_if<PeerGradient>(&message);
  if (g == nullptr) {
    throw ProtocolError(fmt::format("broadcast worker {}: unexpected {} message", ctx_.id,
                                    type_name(type_of(message))));
  }
  if (g->from < 0 || g->from >= schedule_.node_count || g->from == ctx_.id ||
      g->iteration < iteration_) {
    throw ProtocolError(fmt::format(
        "broadcast worker {}: a gradient from worker {} for iteration {} during iteration {}",
        ctx_.id, g->from, g->iteration, iteration_));
  }
  auto& slot = payloads_[g->iteration];
  slot.resize(static_cast<std::size_t>(schedule_.node_count));
  auto& p = slot[static_cast<std::size_t>(g->from)];
  if (p) {
    throw ProtocolError(
        fmt::format("broadcast worker {}: two gradients from worker {} for "
                    "iteration {}",
                    ctx_.id, g->from, g->iteration));
  }
  p = std::make_shared<const Payload>(g->values);
  return try_finish(out);
}

std::vector<std::uint8_t> BroadcastWorker::snapshot() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put_bytes(optimiser_->snapshot());
  w.put_bytes(codec_->state());
  return out;
}

void BroadcastWorker::restore(std::span<const std::uint8_t> state) {
  if (state.empty()) return;
  StateReader r(state, "broadcast worker state");
  const auto optimiser = r.get_bytes();
  const auto codec = r.get_bytes();
  r.expect_end();
  optimiser_->restore(optimiser);
  codec_->restore_state(codec);
}

WorkerAction BroadcastWorker::compute_step(Outbox& out) {
  PSGD_CHECK(started_ && !waiting_, "broadcast worker asked to compute out of turn");
  Stopwatch sw(*ctx_.clock);
  step_ = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  sw.restart();
  auto payload = std::make_shared<const Payload>(codec_->encode(ctx_.learner->gradients()));
  times_.encode_s = sw.seconds();
  auto message = std::make_shared<const Message>(
      PeerGradient{.from = ctx_.id, .iteration = iteration_, .values = *payload});
  // Bytes on the wire: the whole frame, once per receiver (one multicast).
  const std::uint64_t frame = frame_size(*message);
  sent_bytes_ = frame * static_cast<std::uint64_t>(schedule_.node_count - 1);
  multicast_bytes_ = schedule_.node_count > 1 ? frame : 0;
  for (NodeId w = 0; w < schedule_.node_count; ++w) {
    if (w == ctx_.id) continue;
    out.push_back({w, message});
  }
  auto& slot = payloads_[iteration_];
  slot.resize(static_cast<std::size_t>(schedule_.node_count));
  slot[static_cast<std::size_t>(ctx_.id)] = std::move(payload);
  waiting_ = true;
  wait_start_ = ctx_.clock->now();
  return try_finish(out);
}

WorkerAction BroadcastWorker::try_finish(Outbox& out) {
  if (!waiting_) return {};
  auto it = payloads_.find(iteration_);
  if (it == payloads_.end()) return {};
  for (const auto& p : it->second)
    if (!p) return {};
  waiting_ = false;
  times_.wait_s = ctx_.clock->now() - wait_start_;
  Stopwatch sw(*ctx_.clock);
  for (std::size_t w = 0; w < slots_.size(); ++w)
    codec_->decode(*it->second[w], slots_[w]);
  payloads_.erase(it);
  const auto mean = mean_of_slots(slots_, all_, mean_);
  times_.decode_s = sw.seconds();
  sw.restart();
  auto params = ctx_.learner->parameters();
  optimiser_->step(params, mean, iteration_);
  times_.apply_s = sw.seconds();
  ++iteration_;
  AllreduceReport report{.iteration = iteration_,
                         .loss = step_.loss,
                         .samples = step_.samples,
                         .times = times_,
                         .peer_bytes = sent_bytes_,
                         .multicast_bytes = multicast_bytes_};
  times_ = PhaseTimes{};
  return {.compute = send_iteration_report(std::move(report), *ctx_.learner, schedule_,
                                           ctx_.id == 0, out)};
}

}  // namespace psgd
