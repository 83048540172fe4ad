#include "psgd/factory.h"

#include "core/error.h"
#include "psgd/allreduce.h"
#include "psgd/asgd.h"
#include "psgd/broadcast.h"
#include "psgd/ccdc.h"
#include "psgd/gc.h"
#include "psgd/local_sgd.h"
#include "psgd/ssgd.h"
#include "psgd/ssp.h"

namespace psgd {
namespace {

bool per_worker_updates(const JobSpec& spec) {
  return spec.psgd == "asgd" || spec.psgd == "ssp";
}

bool is_coded_codec(const std::string& codec) {
  return codec == "gc" || codec == "ndc";
}

GcOptions gc_options(const JobSpec& spec) {
  return GcOptions{.redundancy = spec.redundancy, .naive = spec.codec == "ndc"};
}

LocalSgdOptions local_sgd_options(const JobSpec& spec) {
  return LocalSgdOptions{.sync_period = spec.local_sync_period(),
                         .local_after_epochs = spec.local_after_epochs};
}

AsgdOptions asgd_options(const JobSpec& spec) {
  AsgdOptions options{.staleness_lr = spec.staleness_lr};
  if (spec.delay_compensation > 0) {
    // topk's momentum masking zeroes the worker's buffer where it sent, so the server cannot
    // recover the worker's gradient from its updates (psgd/delay_compensation.h).
    if (spec.codec == "topk" && momentum_at_worker(spec) && spec.momentum > 0) {
      throw ConfigError(
          "--delay_compensation with --codec topk needs --momentum_at server (or --momentum 0): "
          "topk's momentum masking on the workers hides their gradients from the server");
    }
    options.delay_compensation = {.lambda = static_cast<float>(spec.delay_compensation),
                                  .adaptive = spec.delay_compensation_mode == "adaptive"};
  }
  return options;
}

}  // namespace

SgdOptions sgd_options(const JobSpec& spec) {
  // With momentum correction on the workers (codecs/momentum.h) the server's SGD has none.
  const bool on_server = !momentum_at_worker(spec);
  return SgdOptions{.learning_rate = static_cast<float>(spec.learn_rate),
                    .momentum = on_server ? static_cast<float>(spec.momentum) : 0.0f,
                    .weight_decay = static_cast<float>(spec.weight_decay),
                    .nesterov = on_server && spec.nesterov};
}

Schedule make_schedule(const JobSpec& spec, std::int64_t train_samples) {
  if (spec.codec == "ccdc") {
    // One batch per block, C(n, r) blocks: an iteration covers C(n, r) batches (psgd/ccdc.h).
    check_ccdc_layout(spec.node_count, spec.redundancy);
    const auto blocks =
        static_cast<int>(binomial_capped(spec.node_count, spec.redundancy, 1 << 30));
    Schedule s = make_schedule(train_samples, blocks, spec.batch_size, spec.epochs);
    s.node_count = spec.node_count;
    return s;
  }
  Schedule s = make_schedule(train_samples, spec.node_count, spec.batch_size, spec.epochs);
  if (per_worker_updates(spec)) s.iterations_per_epoch *= spec.node_count;
  return s;
}

std::unique_ptr<ServerRole> make_server_role(const JobSpec& spec, const Schedule& schedule,
                                             ServerContext context) {
  if (spec.psgd == "ssgd" && is_coded_codec(spec.codec)) {
    return std::make_unique<GcServer>(schedule, context, gc_options(spec));
  }
  if (spec.psgd == "ssgd") {
    return std::make_unique<SsgdServer>(schedule, context, SsgdOptions{.wait_for = spec.wait_for});
  }
  if (spec.psgd == "asgd") {
    return std::make_unique<AsgdServer>(schedule, context, asgd_options(spec));
  }
  if (spec.psgd == "ssp") {
    return std::make_unique<SspServer>(
        schedule, context,
        SspOptions{.staleness = spec.ssp_staleness(), .staleness_lr = spec.staleness_lr});
  }
  if (spec.psgd == "local_sgd") {
    return std::make_unique<LocalSgdServer>(schedule, context, local_sgd_options(spec));
  }
  if (spec.psgd == "allreduce" || spec.psgd == "broadcast") {
    return std::make_unique<AllreduceServer>(schedule, context);
  }
  throw ConfigError(fmt::format("--psgd {}: no server role for this strategy", spec.psgd));
}

std::unique_ptr<WorkerRole> make_worker_role(const JobSpec& spec, const Schedule& schedule,
                                             WorkerContext context) {
  if (spec.psgd == "ssgd" && is_coded_codec(spec.codec)) {
    return std::make_unique<GcWorker>(context, gc_options(spec));
  }
  if (spec.psgd == "ssgd" || per_worker_updates(spec)) {
    return std::make_unique<GradientWorker>(context);
  }
  if (spec.psgd == "local_sgd") {
    return std::make_unique<LocalSgdWorker>(context, schedule, local_sgd_options(spec),
                                            sgd_options(spec));
  }
  if (spec.psgd == "broadcast" && spec.codec == "ccdc") {
    return std::make_unique<CcdcWorker>(context, schedule, sgd_options(spec),
                                        CcdcOptions{.redundancy = spec.redundancy});
  }
  if (spec.psgd == "broadcast") {
    return std::make_unique<BroadcastWorker>(context, schedule, sgd_options(spec));
  }
  if (spec.psgd == "allreduce") {
    return std::make_unique<AllreduceWorker>(context, schedule, sgd_options(spec));
  }
  throw ConfigError(fmt::format("--psgd {}: no worker role for this strategy", spec.psgd));
}

}  // namespace psgd
