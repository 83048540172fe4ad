#include "psgd/asgd.h"

#include "core/error.h"
#include "psgd/common.h"

namespace psgd {

AsgdServer::AsgdServer(Schedule schedule, ServerContext context, AsgdOptions options)
    : schedule_(schedule),
      ctx_(context),
      update_(schedule.node_count, context, options.staleness_lr),
      downlink_(make_codec(ctx_.downlink)),
      last_sent_(static_cast<std::size_t>(schedule.node_count), 0),
      batches_(static_cast<std::size_t>(schedule.node_count), 0) {}

bool AsgdServer::on_worker_rejoined(NodeId worker, Outbox& out) {
  if (worker < 0 || worker >= schedule_.node_count || finished()) return false;
  last_sent_[static_cast<std::size_t>(worker)] = iteration();
  out.push_back({worker, params_message(iteration(), *downlink_, ctx_.parameters)});
  return true;
}

std::int64_t AsgdServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return batches_[static_cast<std::size_t>(worker)];
}

void AsgdServer::on_start(Outbox& out) {
  broadcast(params_message(iteration(), *downlink_, ctx_.parameters), schedule_.node_count, out);
}

void AsgdServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const Gradient& g = expect_gradient("asgd", from, schedule_.node_count, message);
  const auto w = static_cast<std::size_t>(from);
  if (g.iteration != last_sent_[w]) {
    throw ProtocolError(
        fmt::format("asgd server: worker {} sent a gradient for iteration {} but was last sent "
                    "iteration {}",
                    from, g.iteration, last_sent_[w]));
  }
  ++batches_[w];
  if (finished()) {  // in flight when the last update was made
    WorkerReport late = report_of(g);
    late.dropped = true;
    late.staleness = iteration() - g.iteration;
    if (ctx_.observer) ctx_.observer->on_worker(from, late);
    return;
  }
  RoundStats stats;
  const WorkerReport report = update_.apply(from, g, stats);
  if (!finished()) {
    last_sent_[w] = iteration();
    out.push_back({from, params_message(iteration(), *downlink_, ctx_.parameters)});
  }
  if (ctx_.observer) {
    ctx_.observer->on_worker(from, report);
    ctx_.observer->on_round(stats);
  }
}

}  // namespace psgd
