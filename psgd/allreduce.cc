#include "psgd/allreduce.h"
// Over 400 lines: the ring re-forming after a lost worker (--allreduce_on_loss shrink) changes
// both roles, and is read best beside them.

#include <cereal/types/vector.hpp>

#include <algorithm>
#include <cstring>

#include "codecs/payload_io.h"
#include "core/collective.h"
#include "core/error.h"
#include "core/state_io.h"
#include "network/archive.h"
#include "psgd/common.h"

namespace psgd {

std::uint64_t parameter_hash(std::span<const float> parameters) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto bytes = std::as_bytes(parameters);
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint8_t>(b);
    h *= 0x100000001b3ull;
  }
  return h == 0 ? 1 : h;
}

AllreduceServer::AllreduceServer(Schedule schedule, ServerContext context, bool shrink)
    : schedule_(schedule),
      ctx_(context),
      shrink_(shrink),
      last_(static_cast<std::size_t>(schedule.node_count), 0),
      buffers_(schedule.node_count, ctx_.buffers) {
  PSGD_CHECK(ctx_.clock != nullptr, "allreduce server needs a clock");
  for (int w = 0; w < schedule.node_count; ++w)
    members_.push_back(w);
}

namespace {
constexpr std::uint32_t kAllreduceStateVersion = 1;
}

std::vector<std::uint8_t> AllreduceServer::snapshot() const {
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kAllreduceStateVersion, static_cast<std::int32_t>(schedule_.node_count), iteration_);
  return bytes;
}

void AllreduceServer::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::int32_t nodes = 0;
  std::int64_t iteration = 0;
  ar(version, nodes, iteration);
  if (version != kAllreduceStateVersion || nodes != schedule_.node_count || iteration < 0 ||
      iteration > schedule_.total_iterations() || ar.remaining() != 0) {
    throw ConfigError(fmt::format(
        "peer-to-peer checkpoint state does not fit this job (version {}, {} workers, iteration "
        "{}; this job: {} workers, {} iterations)",
        version, nodes, iteration, schedule_.node_count, schedule_.total_iterations()));
  }
  iteration_ = iteration;
  std::fill(last_.begin(), last_.end(), iteration);
  rounds_.clear();
}

std::int64_t AllreduceServer::worker_batches(NodeId worker) const {
  if (worker < 0 || worker >= schedule_.node_count) return -1;
  return iteration_ * batches_per_iteration_;
}

void AllreduceServer::on_start(Outbox& out) {
  // The workers start from these parameters at this iteration (0, or a checkpoint's).
  auto codec = make_codec(ctx_.downlink);
  broadcast(params_message(iteration_, *codec, ctx_.parameters), schedule_.node_count, out);
}

void AllreduceServer::on_message(NodeId from, const Message& message, Outbox& out) {
  if (from < 0 || from >= schedule_.node_count) {
    throw ProtocolError(fmt::format("allreduce server: message from unknown node {}", from));
  }
  // A lost worker's last messages may still arrive (the simulator delivers what left before the
  // loss): it is no member any more, and they are dropped.
  if (std::find(members_.begin(), members_.end(), from) == members_.end()) return;
  if (const auto* r = std::get_if<AllreduceReport>(&message)) {
    on_report(from, *r);
    if (!halting_) close_complete_rounds();
    return;
  }
  if (const auto* h = std::get_if<RingHalted>(&message); h != nullptr && shrink_) {
    on_halted(from, *h, out);
    return;
  }
  throw ProtocolError(fmt::format("allreduce server: worker {} sent {}, not AllreduceReport", from,
                                  type_name(type_of(message))));
}

void AllreduceServer::on_report(NodeId from, const AllreduceReport& r) {
  const auto w = static_cast<std::size_t>(from);
  if (r.iteration != last_[w] + 1 || r.iteration > schedule_.total_iterations()) {
    throw ProtocolError(fmt::format("allreduce server: worker {} reported iteration {} after {}",
                                    from, r.iteration, last_[w]));
  }
  last_[w] = r.iteration;
  const bool epoch_end = schedule_.epoch_end(r.iteration);
  if (epoch_end && r.param_hash == 0) {
    throw ProtocolError(
        fmt::format("allreduce server: worker {} sent no parameter hash at the end of iteration {}",
                    from, r.iteration));
  }
  const std::size_t n = last_.size();
  Round& round = rounds_[r.iteration];
  if (round.workers.empty()) {
    round.reported.assign(n, false);
    round.workers.resize(n);
    round.hashes.assign(n, 0);
  }
  round.reported[w] = true;
  round.workers[w] = WorkerReport{.iteration = r.iteration - 1,
                                  .loss = r.loss,
                                  .samples = r.samples,
                                  .times = r.times,
                                  .payload_bytes = r.peer_bytes,
                                  .multicast_bytes = r.multicast_bytes};
  round.hashes[w] = r.param_hash;
  buffers_.receive(from, r.buffers);
  if (!r.params.empty()) {
    if (r.params.size() != ctx_.parameters.size()) {
      throw ProtocolError(fmt::format("allreduce server: worker {} sent {} parameters, not {}",
                                      from, r.params.size(), ctx_.parameters.size()));
    }
    if (round.params.empty()) round.params = r.params;
  }
}

void AllreduceServer::close_complete_rounds() {
  // Rounds complete in order: a worker reports iteration i+1 only after iteration i.
  for (auto it = rounds_.find(iteration_ + 1); it != rounds_.end();
       it = rounds_.find(iteration_ + 1)) {
    for (int m : members_)
      if (!it->second.reported[static_cast<std::size_t>(m)]) return;
    close_round(it->second);
    rounds_.erase(it);
  }
}

void AllreduceServer::close_round(Round& round) {
  const std::int64_t it = iteration_ + 1;
  int first = -1;  // the first worker that reported this round: the others must agree with it
  for (std::size_t w = 0; w < round.reported.size(); ++w) {
    if (round.reported[w] && first < 0) first = static_cast<int>(w);
  }
  PSGD_CHECK(first >= 0, "allreduce server: round {} closed without reports", it);
  const auto f = static_cast<std::size_t>(first);
  if (round.hashes[f] != 0) {
    for (std::size_t w = 0; w < round.hashes.size(); ++w) {
      if (round.reported[w] && round.hashes[w] != round.hashes[f]) {
        throw ProtocolError(fmt::format(
            "allreduce: the models diverged: after iteration {} worker {}'s parameters hash to "
            "{:016x} but worker {}'s to {:016x}",
            it, first, round.hashes[f], w, round.hashes[w]));
      }
    }
    if (round.params.empty()) {
      throw ProtocolError(fmt::format(
          "allreduce server: no worker sent its parameters at the end of iteration {}", it));
    }
    std::copy(round.params.begin(), round.params.end(), ctx_.parameters.begin());
    buffers_.update();
  }
  iteration_ = it;
  RoundStats stats{.iteration = it};
  for (std::size_t w = 0; w < round.workers.size(); ++w)
    stats.gradients += round.reported[w] ? 1 : 0;
  stats.missing = schedule_.node_count - stats.gradients;
  for (std::size_t w = 0; w < round.workers.size(); ++w) {
    if (!round.reported[w]) continue;
    stats.train_loss += round.workers[w].loss / stats.gradients;
    stats.samples += round.workers[w].samples;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), round.workers[w]);
  }
  if (ctx_.observer) ctx_.observer->on_round(stats);
}

bool AllreduceServer::on_worker_lost(NodeId worker, Outbox& out) {
  const auto m = std::find(members_.begin(), members_.end(), worker);
  if (m == members_.end()) return true;  // lost before (a second report of one loss)
  if (!shrink_) return false;
  members_.erase(m);
  lost_.push_back(worker);
  if (members_.empty() || finished()) return true;
  halt(out);
  return true;
}

void AllreduceServer::halt(Outbox& out) {
  // A loss during a halt starts another: the answers of the older generation are dropped.
  ++generation_;
  halting_ = true;
  halted_.clear();
  const auto message = std::make_shared<const Message>(RingHalt{.generation = generation_});
  for (int m : members_)
    out.push_back({m, message});
}

void AllreduceServer::on_halted(NodeId from, const RingHalted& h, Outbox& out) {
  if (!halting_ || h.generation != generation_) return;  // an answer to an abandoned halt
  if (h.iteration < iteration_ || h.iteration > schedule_.total_iterations() ||
      h.iteration != last_[static_cast<std::size_t>(from)] ||
      h.params.size() != ctx_.parameters.size()) {
    throw ProtocolError(fmt::format(
        "allreduce server: worker {} halted at iteration {} with {} parameters (it reported "
        "iteration {}; the model has {})",
        from, h.iteration, h.params.size(), last_[static_cast<std::size_t>(from)],
        ctx_.parameters.size()));
  }
  halted_[from] = Halted{.iteration = h.iteration, .params = h.params, .state = h.state};
  if (halted_.size() == members_.size()) reform(out);
}

void AllreduceServer::reform(Outbox& out) {
  std::int64_t low = halted_.begin()->second.iteration;
  std::int64_t high = low;
  int donor = halted_.begin()->first;
  for (const auto& [m, h] : halted_) {
    low = std::min(low, h.iteration);
    if (h.iteration > high) {
      high = h.iteration;
      donor = m;
    }
  }
  if (high - low > 1) {
    throw ProtocolError(fmt::format(
        "allreduce: the ring's members halted {} iterations apart (at {} and {}); a ring cannot "
        "be more than one apart",
        high - low, low, high));
  }
  // Every member has reported every iteration it applied (reports leave before RingHalted), so
  // the rounds up to `high` close now with the members that completed them.
  while (iteration_ < high) {
    auto it = rounds_.find(iteration_ + 1);
    PSGD_CHECK(it != rounds_.end(), "allreduce server: no report of iteration {}", iteration_ + 1);
    close_round(it->second);
    rounds_.erase(it);
  }
  StrategyEvent event{
      .event = "ring_reformed", .iteration = high, .lost = lost_, .members = members_};
  const Halted& from = halted_.at(donor);
  for (int m : members_) {
    RingReform reform{.generation = generation_,
                      .iteration = high,
                      .members = std::vector<std::int32_t>(members_.begin(), members_.end())};
    if (halted_.at(m).iteration < high) {
      reform.params = from.params;
      reform.state = from.state;
      last_[static_cast<std::size_t>(m)] = high;  // it applies iteration `high` by adopting it
      event.adopted.push_back(m);
    }
    out.push_back({m, std::make_shared<const Message>(std::move(reform))});
  }
  halting_ = false;
  halted_.clear();
  lost_.clear();
  if (ctx_.observer) ctx_.observer->on_event(event);
}

namespace {

std::unique_ptr<AllreduceCompression> plain_if_null(std::unique_ptr<AllreduceCompression> c,
                                                    int world) {
  if (c) return c;
  return find_allreduce_compression("plain")->make(AllreduceCompressionSpec{.world = world});
}

RingOptions with_precision(RingOptions ring, const AllreduceCompression& compression) {
  ring.half = compression.half();
  return ring;
}

// A worker's state with a compression that has its own: this tag, then both parts.
constexpr std::uint32_t kCompressedWorkerState = 0x50534744;  // "PSGD"

}  // namespace

AllreduceWorker::AllreduceWorker(WorkerContext context, Schedule schedule,
                                 const OptimizerSpec& optimizer, RingOptions ring,
                                 std::unique_ptr<AllreduceCompression> compression, bool shrink)
    : ctx_(context),
      schedule_(schedule),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      compression_(plain_if_null(std::move(compression), schedule.node_count)),
      ring_options_(with_precision(ring, *compression_)),
      ring_(std::make_unique<RingAllreduce>(context.id, schedule.node_count, ring_options_)),
      shrink_(shrink) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "allreduce worker needs a learner and a clock");
  PSGD_CHECK(ctx_.collective == nullptr || (compression_->rounds() == 1 && !compression_->half()),
             "allreduce worker: a compressed allreduce runs on the ring only");
  // The job refuses shrink with a compression that cannot follow the ring's size.
  PSGD_CHECK(!shrink_ || compression_->set_world(schedule.node_count),
             "allreduce worker: this compression cannot follow a shrinking ring");
  for (int w = 0; w < schedule.node_count; ++w)
    members_.push_back(w);
}

// Without compression state the optimiser's bytes alone, as before compression existed (so old
// checkpoints and plain resumes are unchanged).
std::vector<std::uint8_t> AllreduceWorker::snapshot() const {
  std::vector<std::uint8_t> own = compression_->snapshot();
  if (own.empty()) return optimiser_->snapshot();
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kCompressedWorkerState, optimiser_->snapshot(), own);
  return bytes;
}

void AllreduceWorker::restore(std::span<const std::uint8_t> state) {
  if (state.empty()) return;
  if (compression_->snapshot().empty()) {
    optimiser_->restore(state);
    return;
  }
  wire::InputArchive ar(state);
  std::uint32_t tag = 0;
  std::vector<std::uint8_t> optimiser, own;
  ar(tag);
  if (tag != kCompressedWorkerState) {
    throw ConfigError(
        "allreduce checkpoint: this worker's state has no compression state; was the checkpoint "
        "written by a job with another --codec?");
  }
  ar(optimiser, own);
  if (!optimiser.empty()) optimiser_->restore(optimiser);
  compression_->restore(own);
}

bool send_iteration_report(AllreduceReport report, Learner& learner, const Schedule& schedule,
                           bool with_params, Outbox& out) {
  const std::int64_t done = report.iteration;
  if (schedule.epoch_end(done)) {
    const std::span<const float> params = learner.parameters();
    report.param_hash = parameter_hash(params);
    if (with_params) report.params.assign(params.begin(), params.end());
    const std::span<const float> buffers = learner.buffers();
    report.buffers.assign(buffers.begin(), buffers.end());
  }
  out.push_back({kServer, std::make_shared<const Message>(std::move(report))});
  return done < schedule.total_iterations();
}

WorkerAction AllreduceWorker::on_message(const Message& message, Outbox& out) {
  if (const auto* p = std::get_if<Params>(&message)) {
    // 0, or the checkpoint's iteration on a resumed run
    iteration_ = start_params("allreduce", *p, started_, schedule_.total_iterations(),
                              ctx_.downlink, *ctx_.learner);
    return compute_next();
  }
  if (ctx_.collective == nullptr) {
    if (const auto* chunk = std::get_if<RingChunk>(&message)) return on_chunk(*chunk, out);
    if (shrink_) {
      if (const auto* h = std::get_if<RingHalt>(&message)) return on_halt(*h, out);
      if (const auto* r = std::get_if<RingReform>(&message)) return on_reform(*r, out);
    }
  }
  throw ProtocolError(fmt::format("allreduce worker {}: unexpected {} message", ctx_.id,
                                  type_name(type_of(message))));
}

WorkerAction AllreduceWorker::on_chunk(const RingChunk& chunk, Outbox& out) {
  const std::int64_t generation = chunk.round >> kGenerationShift;
  if (generation < generation_) return {};  // of a ring abandoned after a loss
  if (generation > generation_ || halted_) {
    // The next ring's, from a member that got its RingReform first (a later one would be a
    // generation no RingHalt has announced).
    if (generation > generation_ || !shrink_) {
      throw ProtocolError(
          fmt::format("allreduce worker {}: a chunk of ring generation {} during {}", ctx_.id,
                      generation, generation_));
    }
    early_.push_back(chunk);
    return {};
  }
  ring_->on_chunk(chunk, out);
  if (!reducing_ || !ring_->done()) return {};
  peer_bytes_ += ring_->bytes_sent();
  if (++round_ < compression_->rounds() && !start_round({}, out)) return {};
  return finish_iteration(out);
}

WorkerAction AllreduceWorker::on_halt(const RingHalt& halt, Outbox& out) {
  if (!started_ || halt.generation <= generation_) {
    throw ProtocolError(fmt::format("allreduce worker {}: RingHalt of generation {} during {}",
                                    ctx_.id, halt.generation, generation_));
  }
  generation_ = halt.generation;
  halted_ = true;
  early_.clear();
  if (reducing_) {
    // The ring stalled: keep the gradient (own_) to sum it again on the next ring.
    reducing_ = false;
    pending_ = true;
  }
  const std::span<const float> params = ctx_.learner->parameters();
  out.push_back(
      {kServer, std::make_shared<const Message>(RingHalted{.generation = generation_,
                                                           .iteration = iteration_,
                                                           .params = {params.begin(), params.end()},
                                                           .state = snapshot()})});
  return {};
}

WorkerAction AllreduceWorker::on_reform(const RingReform& reform, Outbox& out) {
  const auto me = std::find(reform.members.begin(), reform.members.end(), ctx_.id);
  if (!halted_ || reform.generation != generation_ || me == reform.members.end() ||
      (reform.iteration != iteration_ && reform.iteration != iteration_ + 1)) {
    throw ProtocolError(fmt::format(
        "allreduce worker {} (generation {}, iteration {}): a RingReform of generation {} at "
        "iteration {} that does not fit",
        ctx_.id, generation_, iteration_, reform.generation, reform.iteration));
  }
  halted_ = false;
  if (reform.iteration == iteration_ + 1) {
    // The others completed the iteration whose ring this worker was in: its gradient is in
    // their sum, so it takes their result instead of applying one of its own.
    auto params = ctx_.learner->parameters();
    if (reform.params.size() != params.size()) {
      throw ProtocolError(fmt::format("allreduce worker {}: RingReform with {} parameters, not {}",
                                      ctx_.id, reform.params.size(), params.size()));
    }
    std::copy(reform.params.begin(), reform.params.end(), params.begin());
    restore(reform.state);
    iteration_ = reform.iteration;
    pending_ = false;
  }
  members_.assign(reform.members.begin(), reform.members.end());
  const int rank = static_cast<int>(me - reform.members.begin());
  const int k = static_cast<int>(members_.size());
  PSGD_CHECK(compression_->set_world(k), "allreduce worker: the compression cannot shrink");
  ring_ = std::make_unique<RingAllreduce>(rank, k, ring_options_,
                                          members_[static_cast<std::size_t>((rank + 1) % k)]);
  for (RingChunk& c : early_)
    ring_->on_chunk(c, out);  // kept by the ring until its round starts
  early_.clear();
  if (iteration_ >= schedule_.total_iterations()) return {};  // done: the server will finish
  if (pending_) {
    pending_ = false;
    return reduce(own_, out);
  }
  if (awaiting_compute_) return {};  // compute_step() will start the ring
  return compute_next();
}

WorkerAction AllreduceWorker::compute_step(Outbox& out) {
  PSGD_CHECK(started_ && !reducing_ && !pending_, "allreduce worker asked to compute out of turn");
  awaiting_compute_ = false;
  if (ctx_.collective != nullptr) {
    if (!collective_done_) compute_detached();  // a driver that does not detach
    collective_done_ = false;
    return finish_iteration(out);
  }
  Stopwatch sw(*ctx_.clock);
  step_ = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  const auto g = ctx_.learner->gradients();
  if (shrink_) own_.assign(g.begin(), g.end());  // to sum again if the ring loses a member
  if (halted_) {
    pending_ = true;  // the next ring sums it
    return {};
  }
  return reduce(g, out);
}

void AllreduceWorker::compute_detached() {
  if (ctx_.collective == nullptr) return;  // the ring's hops are messages: all on the event thread
  PSGD_CHECK(!collective_done_, "allreduce worker: a second detached step before compute_step");
  Stopwatch sw(*ctx_.clock);
  step_ = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  const auto g = ctx_.learner->gradients();
  // The mean straight into the update (the plain compression's sum times 1/n, as its finish()).
  reduce_start_ = ctx_.clock->now();
  update_.resize(g.size());
  ctx_.collective->allreduce_scaled(g, update_, 1.0f / static_cast<float>(schedule_.node_count));
  times_.wait_s = ctx_.clock->now() - reduce_start_;
  collective_done_ = true;
}

WorkerAction AllreduceWorker::reduce(std::span<const float> gradient, Outbox& out) {
  reduce_start_ = ctx_.clock->now();
  reducing_ = true;
  round_ = 0;
  peer_bytes_ = 0;
  if (start_round(gradient, out)) return finish_iteration(out);
  return {};
}

bool AllreduceWorker::start_round(std::span<const float> gradient, Outbox& out) {
  for (;;) {
    ring_->start(ring_round(), compression_->round_buffer(round_, gradient), out);
    if (!ring_->done()) return false;
    peer_bytes_ += ring_->bytes_sent();
    if (++round_ == compression_->rounds()) return true;
  }
}

WorkerAction AllreduceWorker::finish_iteration(Outbox& out) {
  reducing_ = false;
  if (ctx_.collective == nullptr) times_.wait_s = ctx_.clock->now() - reduce_start_;
  Stopwatch sw(*ctx_.clock);
  // The mean over the ring's members (all n workers, or those left after a loss), or the
  // compression's approximation of it.
  auto params = ctx_.learner->parameters();
  update_.resize(params.size());
  if (ctx_.collective == nullptr) compression_->finish(update_);  // else the collective's mean
  optimiser_->step(params, update_, iteration_);
  times_.apply_s = sw.seconds();
  ++iteration_;
  AllreduceReport report{.iteration = iteration_,
                         .loss = step_.loss,
                         .samples = step_.samples,
                         .times = times_,
                         .peer_bytes = ctx_.collective ? 0 : peer_bytes_};
  if (ctx_.collective) {
    report.peer_bytes =
        ctx_.collective->peer_bytes(update_.size() * sizeof(float), schedule_.node_count);
  }
  report.multicast_bytes = report.peer_bytes;  // a ring sends each chunk to one peer
  times_ = PhaseTimes{};
  const bool with_params = shrink_ || ctx_.id == members_.front();
  if (send_iteration_report(std::move(report), *ctx_.learner, schedule_, with_params, out)) {
    return compute_next();
  }
  return {};
}

}  // namespace psgd
