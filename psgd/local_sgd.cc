#include "psgd/local_sgd.h"

#include <cereal/types/vector.hpp>

#include <algorithm>

#include "core/error.h"
#include "core/state_io.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {

std::int64_t local_steps_at(const Schedule& schedule, const LocalSgdOptions& options,
                            std::int64_t iteration) {
  const std::int64_t ipe = schedule.iterations_per_epoch;
  const std::int64_t to_epoch_end = (iteration / ipe + 1) * ipe - iteration;
  const std::int64_t h =
      iteration < options.local_after_epochs * ipe ? 1 : std::max(1, options.sync_period);
  return std::min(h, to_epoch_end);
}

LocalSgdServer::LocalSgdServer(Schedule schedule, ServerContext context, LocalSgdOptions options)
    : schedule_(schedule),
      ctx_(context),
      options_(options),
      downlink_(make_codec(ctx_.downlink)),
      slots_(static_cast<std::size_t>(schedule.node_count),
             std::vector<float>(ctx_.parameters.size(), 0.0f)),
      pending_(static_cast<std::size_t>(schedule.node_count)),
      average_(ctx_.parameters.size(), 0.0f),
      buffers_(schedule.node_count, ctx_.buffers) {
  PSGD_CHECK(ctx_.clock != nullptr, "local_sgd server needs a clock");
  for (int w = 0; w < schedule_.node_count; ++w)
    uplink_.push_back(make_codec(ctx_.uplink));
  alive_.assign(static_cast<std::size_t>(schedule_.node_count), true);
  alive_count_ = schedule_.node_count;
}

bool LocalSgdServer::on_worker_lost(NodeId worker, Outbox& out) {
  if (worker < 0 || worker >= schedule_.node_count) return true;
  const auto w = static_cast<std::size_t>(worker);
  if (!alive_[w]) return true;
  alive_[w] = false;
  --alive_count_;
  if (pending_[w].received) {
    pending_[w] = Pending{};
    --received_;
  }
  if (alive_count_ == 0) return false;
  if (!finished() && received_ > 0 && received_ == alive_count_) close_round(out);
  return true;
}

namespace {
constexpr std::uint32_t kLocalSgdStateVersion = 1;
}

std::vector<std::uint8_t> LocalSgdServer::snapshot() const {
  PSGD_CHECK(received_ == 0, "local_sgd snapshot with {} models of an open round", received_);
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kLocalSgdStateVersion, static_cast<std::int32_t>(schedule_.node_count), iteration_);
  return bytes;
}

void LocalSgdServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::int64_t iteration = 0;
  ar(version, nodes, iteration);
  if (version != kLocalSgdStateVersion || nodes != schedule_.node_count || iteration < 0 ||
      iteration > schedule_.total_iterations() || ar.remaining() != 0) {
    throw ConfigError(fmt::format(
        "local_sgd checkpoint state does not fit this job (version {}, {} workers, iteration {}; "
        "this job: {} workers, {} iterations)",
        version, nodes, iteration, schedule_.node_count, schedule_.total_iterations()));
  }
  iteration_ = iteration;
  std::fill(alive_.begin(), alive_.end(), true);
  alive_count_ = schedule_.node_count;
}

std::int64_t LocalSgdServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return iteration_;
}

void LocalSgdServer::on_start(Outbox& out) {
  broadcast(params_message(iteration_, *downlink_, ctx_.parameters), schedule_.node_count, out);
}

void LocalSgdServer::on_message(NodeId from, const Message& message, Outbox& out) {
  const auto* m = std::get_if<ModelDelta>(&message);
  if (m == nullptr) {
    throw ProtocolError(fmt::format("local_sgd server: unexpected {} message from worker {}",
                                    type_name(type_of(message)), from));
  }
  if (from < 0 || from >= schedule_.node_count) {
    throw ProtocolError(fmt::format("local_sgd server: model from unknown worker {}", from));
  }
  if (finished() || m->iteration != iteration_) {
    throw ProtocolError(
        fmt::format("local_sgd server: worker {} sent a model for iteration {} during iteration {}",
                    from, m->iteration, iteration_));
  }
  const std::int64_t steps = local_steps_at(schedule_, options_, iteration_);
  if (m->local_steps != steps) {
    throw ProtocolError(
        fmt::format("local_sgd server: worker {} took {} local steps where the round has {}", from,
                    m->local_steps, steps));
  }
  Pending& p = pending_[static_cast<std::size_t>(from)];
  if (p.received) {
    throw ProtocolError(fmt::format(
        "local_sgd server: worker {} sent a second model for iteration {}", from, iteration_));
  }
  Stopwatch sw(*ctx_.clock);
  std::vector<float>& slot = slots_[static_cast<std::size_t>(from)];
  std::fill(slot.begin(), slot.end(), 0.0f);
  uplink_[static_cast<std::size_t>(from)]->decode_add(m->values, slot, 1.0f);
  buffers_.receive(from, m->buffers);
  decode_s_ += sw.seconds();
  p.received = true;
  p.arrival = ctx_.clock->now();
  p.report = WorkerReport{.iteration = m->iteration,
                          .loss = m->loss,
                          .samples = m->samples,
                          .times = m->times,
                          .payload_bytes = m->values.size_bytes(),
                          .local_steps = m->local_steps};
  if (!alive_[static_cast<std::size_t>(from)]) {
    throw ProtocolError(fmt::format("local_sgd server: model from lost worker {}", from));
  }
  if (++received_ == alive_count_) close_round(out);
}

void LocalSgdServer::close_round(Outbox& out) {
  Stopwatch sw(*ctx_.clock);
  std::int64_t samples = 0;
  for (const Pending& p : pending_)
    samples += p.received ? p.report.samples : 0;
  // FedAvg: weight each model by the samples behind it; summed in worker order (deterministic).
  std::fill(average_.begin(), average_.end(), 0.0f);
  for (std::size_t w = 0; w < slots_.size(); ++w) {
    if (!pending_[w].received) continue;  // lost
    const float weight = samples > 0 ? static_cast<float>(pending_[w].report.samples) / samples
                                     : 1.0f / static_cast<float>(received_);
    const float* src = slots_[w].data();
    for (std::size_t i = 0; i < average_.size(); ++i)
      average_[i] += weight * src[i];
  }
  for (std::size_t i = 0; i < average_.size(); ++i)
    ctx_.parameters[i] -= average_[i];
  buffers_.update();
  const double apply_s = sw.seconds();
  iteration_ += local_steps_at(schedule_, options_, iteration_);

  RoundStats stats{.iteration = iteration_,
                   .gradients = received_,
                   .samples = samples,
                   .decode_s = decode_s_,
                   .apply_s = apply_s};
  if (!finished()) {
    broadcast(params_message(iteration_, *downlink_, ctx_.parameters), schedule_.node_count, out);
  }
  const double now = ctx_.clock->now();
  for (std::size_t w = 0; w < pending_.size(); ++w) {
    Pending& p = pending_[w];
    if (!p.received) continue;
    stats.train_loss += p.report.loss / received_;
    p.report.held_s = now - p.arrival;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), p.report);
    p = Pending{};
  }
  if (ctx_.observer) ctx_.observer->on_round(stats);
  received_ = 0;
  decode_s_ = 0;
}

LocalSgdWorker::LocalSgdWorker(WorkerContext context, Schedule schedule, LocalSgdOptions options,
                               const OptimizerSpec& optimizer)
    : ctx_(context),
      schedule_(schedule),
      options_(options),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      uplink_(make_codec(ctx_.uplink)),
      downlink_(make_codec(ctx_.downlink)) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "local_sgd worker needs a learner and a clock");
  start_.resize(ctx_.learner->parameters().size());
  delta_.resize(start_.size());
}

std::vector<std::uint8_t> LocalSgdWorker::snapshot() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put<std::int64_t>(done_);
  w.put_bytes(optimiser_->snapshot());
  w.put_bytes(uplink_->state());
  return out;
}

void LocalSgdWorker::restore(std::span<const std::uint8_t> state) {
  if (state.empty()) return;
  StateReader r(state, "local_sgd worker state");
  const auto done = r.get<std::int64_t>();
  const auto optimiser = r.get_bytes();
  const auto codec = r.get_bytes();
  r.expect_end();
  if (done < 0) r.fail("a negative step count");
  optimiser_->restore(optimiser);
  uplink_->restore_state(codec);
  done_ = done;
}

WorkerAction LocalSgdWorker::on_message(const Message& message, Outbox&) {
  const auto* p = std::get_if<Params>(&message);
  if (p == nullptr) {
    throw ProtocolError(
        fmt::format("local_sgd worker: unexpected {} message", type_name(type_of(message))));
  }
  if (p->iteration <= iteration_) {
    throw ProtocolError(fmt::format("local_sgd worker: parameters of iteration {} arrived after {}",
                                    p->iteration, iteration_));
  }
  if (waiting_since_ >= 0) times_.wait_s = ctx_.clock->now() - waiting_since_;
  Stopwatch sw(*ctx_.clock);
  std::span<float> params = ctx_.learner->parameters();
  downlink_->decode(p->values, params);
  std::copy(params.begin(), params.end(), start_.begin());
  times_.decode_s = sw.seconds();
  iteration_ = p->iteration;
  steps_ = local_steps_at(schedule_, options_, iteration_);
  taken_ = 0;
  loss_sum_ = 0;
  samples_ = 0;
  return {.compute = true};
}

WorkerAction LocalSgdWorker::compute_step(Outbox& out) {
  PSGD_CHECK(iteration_ >= 0 && taken_ < steps_,
             "local_sgd worker asked to compute outside a round");
  Stopwatch sw(*ctx_.clock);
  const StepStats step = ctx_.learner->compute_gradient();
  times_.compute_s += sw.seconds();
  sw.restart();
  optimiser_->step(ctx_.learner->parameters(), ctx_.learner->gradients(), iteration_ + taken_);
  times_.apply_s += sw.seconds();
  loss_sum_ += step.loss;
  samples_ += step.samples;
  ++done_;
  if (++taken_ < steps_) return {.compute = true};

  sw.restart();
  const std::span<const float> local = ctx_.learner->parameters();
  for (std::size_t i = 0; i < delta_.size(); ++i)
    delta_[i] = start_[i] - local[i];
  Payload payload = payloads_.take();
  uplink_->encode_into(delta_, payload);
  times_.encode_s = sw.seconds();
  out.push_back({kServer, payloads_.keep(ModelDelta{
                              .iteration = iteration_,
                              .values = std::move(payload),
                              .loss = loss_sum_ / static_cast<double>(taken_),
                              .samples = samples_,
                              .local_steps = taken_,
                              .times = times_,
                              .buffers = std::vector<float>(ctx_.learner->buffers().begin(),
                                                            ctx_.learner->buffers().end())})});
  times_ = PhaseTimes{};
  waiting_since_ = ctx_.clock->now();
  return {.compute = false};
}

}  // namespace psgd
