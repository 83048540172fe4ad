#include "psgd/ssgd.h"

#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <algorithm>

#include "codecs/payload_io.h"
#include "core/error.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {

SsgdServer::SsgdServer(Schedule schedule, ServerContext context, SsgdOptions options)
    : schedule_(schedule),
      ctx_(context),
      wait_for_(options.wait_for > 0 ? options.wait_for : schedule.node_count),
      optimiser_(make_optimizer(ctx_.optimizer, ctx_.parameters.size())),
      buffers_(schedule.node_count, ctx_.buffers),
      downlink_(make_codec(ctx_.downlink)),
      sum_(ctx_.parameters.size(), 0.0f),
      slots_(static_cast<std::size_t>(schedule.node_count),
             std::vector<float>(ctx_.parameters.size(), 0.0f)),
      pending_(static_cast<std::size_t>(schedule.node_count)),
      received_mask_(static_cast<std::size_t>(schedule.node_count), false),
      last_sent_(static_cast<std::size_t>(schedule.node_count), 0),
      batches_(static_cast<std::size_t>(schedule.node_count), 0) {
  PSGD_CHECK(ctx_.clock != nullptr, "ssgd server needs a clock");
  PSGD_CHECK(wait_for_ >= 1 && wait_for_ <= schedule_.node_count,
             "ssgd: wait_for {} with {} workers", wait_for_, schedule_.node_count);
  for (int w = 0; w < schedule_.node_count; ++w)
    uplink_.push_back(make_codec(ctx_.uplink));
  alive_ = schedule_.node_count;
}

bool SsgdServer::on_worker_lost(NodeId worker, Outbox& out) {
  (void)out;
  if (worker < 0 || worker >= schedule_.node_count) return true;
  // A gradient it already sent for the open round still counts; the survivors fill the rest.
  --alive_;
  return wait_for_ < schedule_.node_count && alive_ >= wait_for_;
}

bool SsgdServer::on_worker_rejoined(NodeId worker, Outbox& out) {
  if (worker < 0 || worker >= schedule_.node_count || finished()) return false;
  const auto w = static_cast<std::size_t>(worker);
  ++alive_;
  // The lost worker's gradient for the open round still counts: close_round() replies to its
  // slot. Otherwise the replacement starts on the current model at once.
  if (pending_[w].received) return true;
  last_sent_[w] = iteration_;
  out.push_back({worker, params_message(iteration_, *downlink_, ctx_.parameters)});
  return true;
}

namespace {
constexpr std::uint32_t kSsgdStateVersion = 2;  // 2: any optimiser's state (was: momentum)
}

std::vector<std::uint8_t> SsgdServer::snapshot() const {
  PSGD_CHECK(received_ == 0, "ssgd snapshot with {} gradients of an open round", received_);
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kSsgdStateVersion, static_cast<std::int32_t>(schedule_.node_count), iteration_,
     optimiser_->snapshot(), buffers_.snapshot(), last_sent_, batches_);
  return bytes;
}

void SsgdServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::int64_t iteration = 0;
  std::vector<std::uint8_t> optimiser;
  std::vector<std::vector<float>> buffers;
  std::vector<std::int64_t> last_sent, batches;
  ar(version, nodes, iteration, optimiser, buffers, last_sent, batches);
  const auto n = static_cast<std::size_t>(schedule_.node_count);
  if (version != kSsgdStateVersion || nodes != schedule_.node_count || last_sent.size() != n ||
      batches.size() != n || iteration < 0 || iteration > schedule_.total_iterations() ||
      ar.remaining() != 0) {
    throw ConfigError(fmt::format(
        "ssgd checkpoint state does not fit this job (version {}, {} workers, iteration {}; this "
        "job: version {}, {} workers, {} iterations)",
        version, nodes, iteration, kSsgdStateVersion, schedule_.node_count,
        schedule_.total_iterations()));
  }
  optimiser_->restore(optimiser);  // ConfigError when it is another optimiser's state
  buffers_.restore(std::move(buffers));
  iteration_ = iteration;
  batches_ = std::move(batches);
  // Every worker (re)joins and is sent the checkpoint's parameters by on_start().
  std::fill(last_sent_.begin(), last_sent_.end(), iteration_);
  alive_ = schedule_.node_count;
}

std::int64_t SsgdServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return batches_[static_cast<std::size_t>(worker)];
}

void SsgdServer::on_start(Outbox& out) {
  broadcast(params_message(iteration_, *downlink_, ctx_.parameters), schedule_.node_count, out);
}

void SsgdServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const Gradient& g = expect_gradient("ssgd", from, schedule_.node_count, message);
  const auto w = static_cast<std::size_t>(from);
  // Each worker has exactly one gradient outstanding, computed on the last parameters it was sent.
  if (g.iteration != last_sent_[w]) {
    throw ProtocolError(fmt::format(
        "ssgd server: worker {} sent a gradient for iteration {} but was last sent iteration {} "
        "(server at iteration {})",
        from, g.iteration, last_sent_[w], iteration_));
  }
  ++batches_[w];
  buffers_.receive(from, g.buffers);
  if (g.iteration < iteration_) {
    drop_late(from, g, out);
    return;
  }
  if (finished()) {
    throw ProtocolError(
        fmt::format("ssgd server: worker {} sent a gradient after the last iteration", from));
  }
  Pending& p = pending_[w];
  if (p.received) {
    throw ProtocolError(fmt::format(
        "ssgd server: worker {} sent a second gradient for iteration {}", from, iteration_));
  }
  Stopwatch sw(*ctx_.clock);
  // Each worker's gradient is decoded into its own slot (or, for plain fp32, kept where it was
  // received) and added to the round's sum in worker order: float addition is not associative,
  // and summing in arrival order would make two runs with the same seed differ in the last bits.
  // The order is kept while the sum grows as the gradients arrive: worker w's gradient is added as
  // soon as those of workers 0 .. w-1 are in, so when the last one arrives only the gradients
  // still waiting for it are left to add, instead of all n while every worker waits (the close is
  // the one stretch of the round in which the server works alone).
  // Only a payload that views a received frame is kept: copying it copies no bytes, and the copy
  // keeps the frame alive. A payload that owns its bytes (in-process drivers) is decoded.
  if (g.values.frame) p.values = uplink_[w]->view_decoded(g.values, slots_[w].size());
  if (!p.values.empty()) {
    p.held = g.values;
  } else {
    uplink_[w]->decode(g.values, slots_[w]);
    p.values = slots_[w];
  }
  p.received = true;
  p.arrival = ctx_.clock->now();
  p.report = report_of(g);
  received_mask_[w] = true;
  // A round of one gradient (one worker, or --wait_for 1) is stepped from where that gradient
  // lies (close_round), without first copying it into the sum.
  if (wait_for_ > 1) sum_in_worker_order(false);
  decode_s_ += sw.seconds();
  if (++received_ == wait_for_) close_round(out);
}

void SsgdServer::sum_in_worker_order(bool closing) {
  while (next_to_sum_ < pending_.size()) {
    Pending& p = pending_[next_to_sum_];
    if (!p.received) {
      if (!closing) return;  // its gradient may still come and must be added before the next
    } else {
      add_to_sum(sum_, p.values, summed_++ == 0);
      // Added: the frame (a shared-memory slot, or the socket's buffer) goes back to its link now
      // rather than when the round closes.
      p.held = Payload{};
      p.values = {};
    }
    ++next_to_sum_;
  }
}

void SsgdServer::drop_late(NodeId from, const Gradient& g, Outbox& out) {
  // Only backup-worker rounds leave gradients behind; with wait_for == n a stale one is a bug.
  if (wait_for_ == schedule_.node_count) {
    throw ProtocolError(
        fmt::format("ssgd server: worker {} sent a gradient for iteration {} during iteration {}",
                    from, g.iteration, iteration_));
  }
  WorkerReport report = report_of(g);
  report.dropped = true;
  report.staleness = iteration_ - g.iteration;
  if (ctx_.observer) ctx_.observer->on_worker(from, report);
  if (finished()) return;
  // Resynchronise the straggler with the newest model so that its next gradient can count.
  last_sent_[static_cast<std::size_t>(from)] = iteration_;
  out.push_back({from, params_message(iteration_, *downlink_, ctx_.parameters)});
}

void SsgdServer::close_round(Outbox& out) {
  Stopwatch sw(*ctx_.clock);
  if (wait_for_ == 1) {
    // The round's one gradient is its mean: stepped from where it lies (a shared-memory slot,
    // the socket's buffer or its decoded slot), one model-sized copy fewer than through sum_.
    const auto lone =
        std::find_if(pending_.begin(), pending_.end(), [](const Pending& p) { return p.received; });
    PSGD_CHECK(lone != pending_.end(), "ssgd: a round closed without a gradient");
    optimiser_->step(ctx_.parameters, lone->values, iteration_);
    lone->held = Payload{};
    lone->values = {};
  } else {
    sum_in_worker_order(true);
    // The mean: ((g0 + g1) + ...) * (1 / count), bit for bit what mean_of gives for these parts.
    if (summed_ > 1) scale(sum_, 1.0f / static_cast<float>(summed_));
    optimiser_->step(ctx_.parameters, sum_, iteration_);
  }
  buffers_.update();
  const double apply_s = sw.seconds();
  ++iteration_;

  RoundStats stats{.iteration = iteration_,
                   .gradients = received_,
                   .decode_s = decode_s_,
                   .apply_s = apply_s,
                   .missing = schedule_.node_count - received_};
  std::shared_ptr<const Message> reply;
  if (!finished()) reply = params_message(iteration_, *downlink_, ctx_.parameters, replies_);
  const double now = ctx_.clock->now();
  for (std::size_t w = 0; w < pending_.size(); ++w) {
    Pending& p = pending_[w];
    if (!p.received) continue;
    if (reply) {
      out.push_back({static_cast<NodeId>(w), reply});
      last_sent_[w] = iteration_;
    }
    stats.train_loss += p.report.loss / received_;
    stats.samples += p.report.samples;
    p.report.held_s = now - p.arrival;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), p.report);
    p = Pending{};
    received_mask_[w] = false;
  }
  if (ctx_.observer) ctx_.observer->on_round(stats);
  received_ = 0;
  next_to_sum_ = 0;
  summed_ = 0;
  decode_s_ = 0;
}

}  // namespace psgd
