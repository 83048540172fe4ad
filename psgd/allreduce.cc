#include "psgd/allreduce.h"

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

AllreduceServer::AllreduceServer(Schedule schedule, ServerContext context)
    : schedule_(schedule),
      ctx_(context),
      last_(static_cast<std::size_t>(schedule.node_count), 0),
      buffers_(schedule.node_count, ctx_.buffers) {
  PSGD_CHECK(ctx_.clock != nullptr, "allreduce server needs a clock");
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

void AllreduceServer::on_message(NodeId from, const Message& message, Outbox&) {
  if (from < 0 || from >= schedule_.node_count) {
    throw ProtocolError(fmt::format("allreduce server: message from unknown node {}", from));
  }
  const auto* r = std::get_if<AllreduceReport>(&message);
  if (r == nullptr) {
    throw ProtocolError(fmt::format("allreduce server: worker {} sent {}, not AllreduceReport",
                                    from, type_name(type_of(message))));
  }
  const auto w = static_cast<std::size_t>(from);
  if (r->iteration != last_[w] + 1 || r->iteration > schedule_.total_iterations()) {
    throw ProtocolError(fmt::format("allreduce server: worker {} reported iteration {} after {}",
                                    from, r->iteration, last_[w]));
  }
  last_[w] = r->iteration;
  const bool epoch_end = schedule_.epoch_end(r->iteration);
  if (epoch_end && r->param_hash == 0) {
    throw ProtocolError(
        fmt::format("allreduce server: worker {} sent no parameter hash at the end of iteration {}",
                    from, r->iteration));
  }
  Round& round = rounds_[r->iteration];
  if (round.workers.empty()) {
    round.workers.resize(w + 1 > last_.size() ? w + 1 : last_.size());
    round.hashes.assign(last_.size(), 0);
  }
  round.workers[w] = WorkerReport{.iteration = r->iteration - 1,
                                  .loss = r->loss,
                                  .samples = r->samples,
                                  .times = r->times,
                                  .payload_bytes = r->peer_bytes,
                                  .multicast_bytes = r->multicast_bytes};
  round.hashes[w] = r->param_hash;
  buffers_.receive(from, r->buffers);
  if (!r->params.empty()) {
    if (r->params.size() != ctx_.parameters.size()) {
      throw ProtocolError(fmt::format("allreduce server: worker {} sent {} parameters, not {}",
                                      from, r->params.size(), ctx_.parameters.size()));
    }
    round.params = r->params;
  }
  if (++round.reports < schedule_.node_count) return;
  // Rounds complete in order: a worker reports iteration i+1 only after iteration i.
  PSGD_CHECK_EQ(r->iteration, iteration_ + 1, "allreduce server: rounds out of order");
  close_round(round);
  rounds_.erase(r->iteration);
}

void AllreduceServer::close_round(Round& round) {
  const std::int64_t it = iteration_ + 1;
  if (round.hashes[0] != 0) {
    for (std::size_t w = 1; w < round.hashes.size(); ++w) {
      if (round.hashes[w] != round.hashes[0]) {
        throw ProtocolError(fmt::format(
            "allreduce: the models diverged: after iteration {} worker 0's parameters hash to "
            "{:016x} but worker {}'s to {:016x}",
            it, round.hashes[0], w, round.hashes[w]));
      }
    }
    if (round.params.empty()) {
      throw ProtocolError(fmt::format(
          "allreduce server: worker 0 sent no parameters at the end of iteration {}", it));
    }
    std::copy(round.params.begin(), round.params.end(), ctx_.parameters.begin());
    buffers_.update();
  }
  iteration_ = it;
  RoundStats stats{.iteration = it, .gradients = schedule_.node_count};
  for (std::size_t w = 0; w < round.workers.size(); ++w) {
    stats.train_loss += round.workers[w].loss / schedule_.node_count;
    stats.samples += round.workers[w].samples;
    if (ctx_.observer) ctx_.observer->on_worker(static_cast<NodeId>(w), round.workers[w]);
  }
  if (ctx_.observer) ctx_.observer->on_round(stats);
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
                                 std::unique_ptr<AllreduceCompression> compression)
    : ctx_(context),
      schedule_(schedule),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      compression_(plain_if_null(std::move(compression), schedule.node_count)),
      ring_(context.id, schedule.node_count, with_precision(ring, *compression_)) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "allreduce worker needs a learner and a clock");
  PSGD_CHECK(ctx_.collective == nullptr || (compression_->rounds() == 1 && !compression_->half()),
             "allreduce worker: a compressed allreduce runs on the ring only");
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
                           NodeId worker, Outbox& out) {
  const std::int64_t done = report.iteration;
  if (schedule.epoch_end(done)) {
    const std::span<const float> params = learner.parameters();
    report.param_hash = parameter_hash(params);
    if (worker == 0) report.params.assign(params.begin(), params.end());
    const std::span<const float> buffers = learner.buffers();
    report.buffers.assign(buffers.begin(), buffers.end());
  }
  out.push_back({kServer, std::make_shared<const Message>(std::move(report))});
  return done < schedule.total_iterations();
}

WorkerAction AllreduceWorker::on_message(const Message& message, Outbox& out) {
  if (const auto* p = std::get_if<Params>(&message)) {
    if (started_ || p->iteration < 0 || p->iteration >= schedule_.total_iterations()) {
      throw ProtocolError(
          fmt::format("allreduce worker: the server sent parameters of iteration {} {}",
                      p->iteration, started_ ? "a second time" : "outside the run"));
    }
    make_codec(ctx_.downlink)->decode(p->values, ctx_.learner->parameters());
    started_ = true;
    iteration_ = p->iteration;  // 0, or the checkpoint's iteration on a resumed run
    return {.compute = true};
  }
  const auto* chunk = std::get_if<RingChunk>(&message);
  if (chunk == nullptr || ctx_.collective != nullptr) {
    throw ProtocolError(fmt::format("allreduce worker {}: unexpected {} message", ctx_.id,
                                    type_name(type_of(message))));
  }
  ring_.on_chunk(*chunk, out);
  if (!reducing_ || !ring_.done()) return {};
  peer_bytes_ += ring_.bytes_sent();
  if (++round_ < compression_->rounds() && !start_round({}, out)) return {};
  return finish_iteration(out);
}

WorkerAction AllreduceWorker::compute_step(Outbox& out) {
  PSGD_CHECK(started_ && !reducing_, "allreduce worker asked to compute out of turn");
  Stopwatch sw(*ctx_.clock);
  step_ = ctx_.learner->compute_gradient();
  times_.compute_s = sw.seconds();
  reduce_start_ = ctx_.clock->now();
  reducing_ = true;
  round_ = 0;
  peer_bytes_ = 0;
  if (ctx_.collective != nullptr) {
    ctx_.collective->allreduce_sum(compression_->round_buffer(0, ctx_.learner->gradients()));
    return finish_iteration(out);
  }
  if (start_round(ctx_.learner->gradients(), out)) return finish_iteration(out);
  return {};
}

bool AllreduceWorker::start_round(std::span<const float> gradient, Outbox& out) {
  const int rounds = compression_->rounds();
  for (;;) {
    ring_.start(iteration_ * rounds + round_, compression_->round_buffer(round_, gradient), out);
    if (!ring_.done()) return false;
    peer_bytes_ += ring_.bytes_sent();
    if (++round_ == rounds) return true;
  }
}

WorkerAction AllreduceWorker::finish_iteration(Outbox& out) {
  reducing_ = false;
  times_.wait_s = ctx_.clock->now() - reduce_start_;
  Stopwatch sw(*ctx_.clock);
  auto params = ctx_.learner->parameters();
  update_.resize(params.size());
  compression_->finish(update_);
  optimiser_->step(params, update_, iteration_);
  times_.apply_s = sw.seconds();
  ++iteration_;
  AllreduceReport report{.iteration = iteration_,
                         .loss = step_.loss,
                         .samples = step_.samples,
                         .times = times_,
                         .peer_bytes = ctx_.collective ? 0 : peer_bytes_};
  if (ctx_.collective) {
    // Gloo's ring moves 2(n-1)/n of the buffer per rank, as ours.
    const auto n = static_cast<std::uint64_t>(schedule_.node_count);
    report.peer_bytes = 2 * (n - 1) * update_.size() * sizeof(float) / n;
  }
  report.multicast_bytes = report.peer_bytes;  // a ring sends each chunk to one peer
  times_ = PhaseTimes{};
  return {.compute =
              send_iteration_report(std::move(report), *ctx_.learner, schedule_, ctx_.id, out)};
}

}  // namespace psgd
