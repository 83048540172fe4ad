#include "psgd/asgd.h"

#include <cereal/types/vector.hpp>

#include "core/error.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {

AsgdServer::AsgdServer(Schedule schedule, ServerContext context, AsgdOptions options)
    : schedule_(schedule),
      ctx_(context),
      update_(schedule.node_count, context, options.staleness_lr),
      downlink_(make_codec(ctx_.downlink)),
      last_sent_(static_cast<std::size_t>(schedule.node_count), 0),
      batches_(static_cast<std::size_t>(schedule.node_count), 0) {
  if (options.delay_compensation.lambda > 0.0f) {
    DelayCompensationOptions dc = options.delay_compensation;
    dc.momentum = ctx_.uplink.momentum;
    dc.nesterov = ctx_.uplink.nesterov;
    compensation_ =
        std::make_unique<DelayCompensation>(schedule.node_count, ctx_.parameters.size(), dc);
  }
}

void AsgdServer::send_params(std::span<const NodeId> workers, Outbox& out) {
  auto message = params_message(iteration(), *downlink_, ctx_.parameters);
  if (compensation_ != nullptr && !workers.empty()) {
    // What the workers will compute on: the parameters as they decode them.
    const std::span<float> sent = compensation_->sent_buffer(workers.front());
    downlink_->decode(std::get<Params>(*message).values, sent);
    for (std::size_t k = 1; k < workers.size(); ++k)
      compensation_->sent(workers[k], sent);
  }
  for (NodeId w : workers) {
    last_sent_[static_cast<std::size_t>(w)] = iteration();
    out.push_back({w, message});
  }
}

bool AsgdServer::on_worker_rejoined(NodeId worker, Outbox& out) {
  if (worker < 0 || worker >= schedule_.node_count || finished()) return false;
  // A replacement's momentum buffer starts empty.
  if (compensation_ != nullptr) compensation_->restart(worker);
  send_params({&worker, 1}, out);
  return true;
}

std::int64_t AsgdServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return batches_[static_cast<std::size_t>(worker)];
}

namespace {
constexpr std::uint32_t kAsgdStateVersion = 1;
}

std::vector<std::uint8_t> AsgdServer::snapshot() const {
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  const std::vector<std::uint8_t> dc =
      compensation_ ? compensation_->state() : std::vector<std::uint8_t>{};
  ar(kAsgdStateVersion, static_cast<std::int32_t>(schedule_.node_count), update_.state(), batches_,
     dc);
  return bytes;
}

void AsgdServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::vector<std::uint8_t> update, dc;
  std::vector<std::int64_t> batches;
  ar(version, nodes, update, batches, dc);
  if (version != kAsgdStateVersion || nodes != schedule_.node_count ||
      batches.size() != batches_.size() || ar.remaining() != 0 ||
      dc.empty() != (compensation_ == nullptr)) {
    throw ConfigError(fmt::format(
        "asgd checkpoint state does not fit this job (version {}, {} workers, delay compensation "
        "{}; this job: {} workers, delay compensation {})",
        version, nodes, dc.empty() ? "off" : "on", schedule_.node_count,
        compensation_ ? "on" : "off"));
  }
  try {
    update_.restore_state(update);
    if (compensation_) compensation_->restore_state(dc);
  } catch (const ProtocolError& e) {
    throw ConfigError(fmt::format("asgd checkpoint state does not fit this job: {}", e.what()));
  }
  if (update_.version() > schedule_.total_iterations()) {
    throw ConfigError(fmt::format("asgd checkpoint at iteration {} of a job of {}",
                                  update_.version(), schedule_.total_iterations()));
  }
  batches_ = std::move(batches);
}

void AsgdServer::on_start(Outbox& out) {
  std::vector<NodeId> all(static_cast<std::size_t>(schedule_.node_count));
  for (NodeId w = 0; w < schedule_.node_count; ++w)
    all[static_cast<std::size_t>(w)] = w;
  send_params(all, out);
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
  const WorkerReport report = update_.apply(from, g, stats, compensation_.get());
  if (!finished()) send_params({&from, 1}, out);
  if (ctx_.observer) {
    ctx_.observer->on_worker(from, report);
    ctx_.observer->on_round(stats);
  }
}

}  // namespace psgd
