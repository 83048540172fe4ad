#include "psgd/ssp.h"

#include <cereal/types/vector.hpp>

#include <algorithm>

#include "core/error.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {

SspServer::SspServer(Schedule schedule, ServerContext context, SspOptions options)
    : schedule_(schedule),
      ctx_(context),
      options_(options),
      update_(schedule.node_count, context, options.staleness_lr),
      downlink_(make_codec(ctx_.downlink)),
      clocks_(static_cast<std::size_t>(schedule.node_count), 0),
      last_sent_(static_cast<std::size_t>(schedule.node_count), 0),
      held_(static_cast<std::size_t>(schedule.node_count)) {
  PSGD_CHECK(options_.staleness >= 0, "ssp: staleness {} must not be negative", options_.staleness);
}

std::int64_t SspServer::slowest_clock() const {
  return *std::min_element(clocks_.begin(), clocks_.end());
}

void SspServer::on_start(Outbox& out) {
  // Every worker waits for its first parameters; those within the bound get them now (all of
  // them at the start of a run, when every clock is 0).
  for (Held& h : held_)
    h = Held{.waiting = true, .silent = true};
  release_within_bound(out);
}

namespace {
constexpr std::uint32_t kSspStateVersion = 1;
}

std::vector<std::uint8_t> SspServer::snapshot() const {
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kSspStateVersion, static_cast<std::int32_t>(schedule_.node_count), update_.state(), clocks_);
  return bytes;
}

void SspServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::vector<std::uint8_t> update;
  std::vector<std::int64_t> clocks;
  ar(version, nodes, update, clocks);
  if (version != kSspStateVersion || nodes != schedule_.node_count ||
      clocks.size() != clocks_.size() || ar.remaining() != 0 ||
      std::any_of(clocks.begin(), clocks.end(), [](std::int64_t c) { return c < 0; })) {
    throw ConfigError(fmt::format(
        "ssp checkpoint state does not fit this job (version {}, {} workers; this job: {} "
        "workers)",
        version, nodes, schedule_.node_count));
  }
  try {
    update_.restore_state(update);
  } catch (const ProtocolError& e) {
    throw ConfigError(fmt::format("ssp checkpoint state does not fit this job: {}", e.what()));
  }
  if (update_.version() > schedule_.total_iterations()) {
    throw ConfigError(fmt::format("ssp checkpoint at iteration {} of a job of {}",
                                  update_.version(), schedule_.total_iterations()));
  }
  clocks_ = std::move(clocks);
}

std::int64_t SspServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return clocks_[static_cast<std::size_t>(worker)];
}

void SspServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const Gradient& g = expect_gradient("ssp", from, schedule_.node_count, message);
  const auto w = static_cast<std::size_t>(from);
  if (held_[w].waiting || g.iteration != last_sent_[w]) {
    throw ProtocolError(fmt::format(
        "ssp server: worker {} sent a gradient for iteration {} while {} (last sent iteration {})",
        from, g.iteration, held_[w].waiting ? "held at the staleness bound" : "computing",
        last_sent_[w]));
  }
  if (finished()) {
    WorkerReport late = report_of(g);
    late.dropped = true;
    late.staleness = iteration() - g.iteration;
    if (ctx_.observer) ctx_.observer->on_worker(from, late);
    return;
  }
  const double arrival = ctx_.clock->now();
  RoundStats stats;
  held_[w] = Held{.waiting = true, .arrival = arrival, .report = update_.apply(from, g, stats)};
  ++clocks_[w];
  if (ctx_.observer) ctx_.observer->on_round(stats);
  release_within_bound(out);
}

void SspServer::release_within_bound(Outbox& out) {
  const std::int64_t bound = slowest_clock() + options_.staleness;
  std::shared_ptr<const Message> reply;
  const double now = ctx_.clock->now();
  for (std::size_t w = 0; w < held_.size(); ++w) {
    Held& h = held_[w];
    if (!h.waiting || (clocks_[w] > bound && !finished())) continue;
    if (!finished()) {
      if (!reply) reply = params_message(iteration(), *downlink_, ctx_.parameters);
      out.push_back({static_cast<NodeId>(w), reply});
      last_sent_[w] = iteration();
    }
    h.report.held_s = now - h.arrival;
    if (ctx_.observer && !h.silent) ctx_.observer->on_worker(static_cast<NodeId>(w), h.report);
    h = Held{};
  }
}

}  // namespace psgd
