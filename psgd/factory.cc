#include "psgd/factory.h"

#include <fmt/format.h>

#include <cmath>

#include "codecs/codec_table.h"
#include "core/error.h"
#include "core/optimizer_table.h"
#include "core/seeds.h"

namespace psgd {

OptimizerSpec optimizer_spec(const StrategyJob& job, const Schedule& schedule) {
  // With momentum correction on the workers (codecs/momentum.h) the optimiser has none.
  const bool here = !momentum_at_worker(job);
  return OptimizerSpec{.name = job.optimizer,
                       .schedule = LrSchedule(job, job.learn_rate, job.node_count,
                                              schedule.iterations_per_epoch, schedule.epochs),
                       .momentum = here ? job.momentum : 0.0,
                       .weight_decay = job.weight_decay,
                       .nesterov = here && job.nesterov,
                       .beta1 = job.beta1,
                       .beta2 = job.beta2,
                       .eps = job.effective_eps(),
                       .amsgrad = job.amsgrad,
                       .alpha = job.alpha,
                       .centered = job.centered,
                       .lr_decay = job.lr_decay,
                       .initial_accumulator_value = job.initial_accumulator_value};
}

bool momentum_at_worker(const StrategyJob& job) {
  // Only SGD's heavy-ball momentum can move to the workers; the others keep their state where
  // they run (OptimizerOptions::validate refuses --momentum_at worker for them).
  if (!optimizer_entry(job.optimizer).sgd_momentum) return false;
  if (job.momentum_at == "worker") return true;
  if (job.momentum_at == "server") return false;
  if (job.momentum_at != "auto") {
    throw ConfigError(
        fmt::format("--momentum_at {}: choose auto, worker or server", job.momentum_at));
  }
  if (coding_of(job)) return false;  // exact fp32 sums: nothing to correct
  // An allreduce compression (psgd/allreduce_compression.h) keeps its own error feedback; the
  // momentum stays in each worker's optimiser, after the sum, as DDP's.
  if (strategy_of(job).allreduce_compressions) return false;
  switch (strategy_of(job).auto_momentum) {
    case AutoMomentum::kWorker:
      // asgd and ssp apply one worker's gradient per server update. Momentum on the server would
      // put its buffer inside the delay loop (a stale gradient re-applied for ~1/(1 - momentum)
      // updates, the implicit momentum of asynchrony added to the explicit one, Mitliagkas et al.
      // 2016) and decay it once per update instead of once per round. On the workers each buffer
      // decays once per that worker's step, as ssgd's does per round, and ssp with staleness 0
      // trains ssgd's model.
      return true;
    case AutoMomentum::kServer:
      return false;
    case AutoMomentum::kWithErrorFeedback:
      break;
  }
  return uses_error_feedback(CodecSpec{.name = job.codec, .error_feedback = job.error_feedback});
}

Schedule make_schedule(const StrategyJob& job, std::int64_t train_samples) {
  if (const CodingEntry* coding = coding_of(job); coding && coding->blocks_per_iteration) {
    // One batch per block: an iteration covers this many batches (ccdc: C(n, r),
    // psgd/coded/ccdc.h).
    const auto blocks = static_cast<int>(coding->blocks_per_iteration(job));
    Schedule s = make_schedule(train_samples, blocks, job.batch_size, job.epochs);
    s.node_count = job.node_count;
    return s;
  }
  Schedule s = make_schedule(train_samples, job.node_count, job.batch_size, job.epochs);
  if (strategy_of(job).per_worker_updates) s.iterations_per_epoch *= job.node_count;
  return s;
}

std::unique_ptr<ServerRole> make_server_role(const StrategyJob& job, const Schedule& schedule,
                                             ServerContext context) {
  if (const CodingEntry* coding = coding_of(job)) {
    return coding->make_server(job, schedule, context);
  }
  return strategy_of(job).make_server(job, schedule, context);
}

std::unique_ptr<WorkerRole> make_worker_role(const StrategyJob& job, const Schedule& schedule,
                                             WorkerContext context) {
  if (const CodingEntry* coding = coding_of(job)) {
    return coding->make_worker(job, schedule, context);
  }
  return strategy_of(job).make_worker(job, schedule, context);
}

CodecSpec uplink_codec_spec(const StrategyJob& job, std::uint64_t sender,
                            std::int64_t iterations_per_epoch,
                            std::vector<std::uint64_t> tensor_sizes) {
  // gc and ndc (psgd/coded/gc.h) code in what they sum, and send it as exact fp32; ccdc
  // (psgd/coded/ccdc.h) XORs exact fp32 bit patterns.
  if (coding_of(job)) return CodecSpec{.error_feedback = "off"};
  return CodecSpec{.name = job.codec,
                   .levels = job.codec_levels,
                   .ratio = job.codec_ratio,
                   .bucket = job.codec_bucket,
                   .error_feedback = job.error_feedback,
                   .seed = seeds::of(job.seed, seeds::codec(sender)),
                   .momentum = momentum_at_worker(job) ? static_cast<float>(job.momentum) : 0.0f,
                   .nesterov = job.nesterov,
                   .segments = job.codec_scope == "tensor" ? std::move(tensor_sizes)
                                                           : std::vector<std::uint64_t>{},
                   .warmup_steps = static_cast<std::int64_t>(std::llround(
                       job.codec_warmup_epochs * static_cast<double>(iterations_per_epoch))),
                   .warmup_ratio = job.codec_warmup_ratio};
}

CodecSpec downlink_codec_spec(const StrategyJob& job) {
  return CodecSpec{.name = job.server_codec, .error_feedback = "off"};
}

BlockLayout block_layout(const StrategyJob& job) {
  const CodingEntry* coding = coding_of(job);
  return coding ? coding->layout : BlockLayout::kSubsets;
}

std::int64_t batches_per_round(const StrategyJob& job) {
  const CodingEntry* coding = coding_of(job);
  if (coding && coding->blocks_per_iteration) {
    return static_cast<std::int64_t>(coding->blocks_per_iteration(job));
  }
  return job.node_count;
}

bool supports_checkpoints(const StrategyJob& job) {
  if (const CodingEntry* coding = coding_of(job)) return coding->checkpoints;
  return strategy_of(job).checkpoints;
}

}  // namespace psgd
