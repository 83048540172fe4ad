#include "psgd/ssp.h"

#include <algorithm>

#include "core/error.h"
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
  broadcast(params_message(iteration(), *downlink_, ctx_.parameters), schedule_.node_count, out);
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
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), h.report);
    h = Held{};
  }
}

}  // namespace psgd
