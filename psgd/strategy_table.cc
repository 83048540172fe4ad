#include "psgd/strategy_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/seeds.h"
#include "psgd/allreduce.h"
#include "psgd/allreduce_compression.h"
#include "psgd/allreduce_overlap.h"
#include "psgd/asgd.h"
#include "psgd/broadcast.h"
#include "psgd/coding_table.h"
#include "psgd/factory.h"
#include "psgd/local_sgd.h"
#include "psgd/ssgd.h"
#include "psgd/ssp.h"

namespace psgd {
namespace {

constexpr std::string_view kSsgdOptions[] = {"wait_for", "overlap"};
constexpr std::string_view kAsgdOptions[] = {"staleness_lr", "delay_compensation",
                                             "delay_compensation_mode"};
constexpr std::string_view kSspOptions[] = {"staleness", "staleness_lr"};
constexpr std::string_view kLocalSgdOptions[] = {"sync_period", "local_after_epochs"};
constexpr std::string_view kAllreduceOptions[] = {"allreduce_backend", "allreduce_on_loss",
                                                  "overlap", "bucket_mb"};

std::unique_ptr<WorkerRole> gradient_worker(const StrategyJob&, const Schedule&,
                                            WorkerContext context) {
  return std::make_unique<GradientWorker>(context);
}

AsgdOptions asgd_options(const StrategyJob& job) {
  AsgdOptions options{.staleness_lr = job.staleness_lr};
  if (job.delay_compensation > 0) {
    options.delay_compensation = {.lambda = static_cast<float>(job.delay_compensation),
                                  .adaptive = job.delay_compensation_mode == "adaptive"};
  }
  return options;
}

void validate_asgd(const StrategyJob& job) {
  // topk's momentum masking zeroes the worker's buffer where it sent, so the server cannot
  // recover the worker's gradient from its updates (psgd/delay_compensation.h).
  if (job.delay_compensation > 0 && job.codec == "topk" && momentum_at_worker(job) &&
      job.momentum > 0) {
    throw ConfigError(
        "--delay_compensation with --codec topk needs --momentum_at server (or --momentum 0): "
        "topk's momentum masking on the workers hides their gradients from the server");
  }
}

void validate_ssgd(const StrategyJob& job) {
  if (job.wait_for > job.node_count) {
    throw ConfigError(fmt::format(
        "--wait_for {} with --node_count {}: a round closes with between 1 and node_count "
        "gradients (0: all)",
        job.wait_for, job.node_count));
  }
  // A worker computing ahead needs the next parameters to be the next iteration's; a dropped
  // gradient's worker is sent the current ones instead.
  if (job.overlap && job.wait_for > 0 && job.wait_for < job.node_count) {
    throw ConfigError(fmt::format(
        "--overlap with --wait_for {} < --node_count {}: a worker computing ahead needs every "
        "round to wait for it; drop one of the two",
        job.wait_for, job.node_count));
  }
  if (job.overlap && find_coding(job.codec) != nullptr) {
    throw ConfigError(fmt::format(
        "--overlap with --codec {}: a coded scheme runs roles of its own, which do not compute "
        "ahead; use a compressor or plain",
        job.codec));
  }
}

GradientWorkerOptions ssgd_worker_options(const StrategyJob& job, const Schedule& schedule) {
  return {.overlap_iterations = job.overlap ? schedule.total_iterations() : 0};
}

bool shrinks(const StrategyJob& job) {
  return job.allreduce_on_loss == "shrink";
}

LocalSgdOptions local_sgd_options(const StrategyJob& job) {
  return LocalSgdOptions{.sync_period = job.local_sync_period(),
                         .local_after_epochs = job.local_after_epochs};
}

// --codec under allreduce: a compression of what the ring sums (psgd/allreduce_compression.h).
std::unique_ptr<AllreduceCompression> make_allreduce_compression(const StrategyJob& job,
                                                                 const Schedule& schedule,
                                                                 const WorkerContext& context) {
  const AllreduceCompressionEntry* entry = find_allreduce_compression(job.codec);
  PSGD_CHECK(entry != nullptr, "allreduce: --codec {} was not validated", job.codec);
  if (entry->needs_tensors && context.tensors.empty()) {
    throw ConfigError(fmt::format(
        "--codec {} needs the model's tensor shapes, and this worker's learner has none",
        job.codec));
  }
  return entry->make(AllreduceCompressionSpec{.world = schedule.node_count,
                                              .rank = job.codec_rank,
                                              .seed = seeds::of(job.seed, seeds::kPowerSgd),
                                              .tensors = context.tensors});
}

void validate_allreduce(const StrategyJob& job) {
  if (job.codec != "plain" && job.allreduce_backend != "ring") {
    throw ConfigError(fmt::format(
        "--codec {} with --allreduce_backend {}: compressed allreduce runs on psgd's ring only "
        "(its rounds are messages on the ring); use --allreduce_backend ring",
        job.codec, job.allreduce_backend));
  }
  if (shrinks(job) && job.allreduce_backend != "ring") {
    throw ConfigError(fmt::format(
        "--allreduce_on_loss shrink with --allreduce_backend {}: its group cannot change its "
        "members once formed; use --allreduce_backend ring",
        job.allreduce_backend));
  }
  const AllreduceCompressionEntry* entry = find_allreduce_compression(job.codec);
  if (shrinks(job) && entry != nullptr && !entry->shrinks) {
    throw ConfigError(fmt::format(
        "--allreduce_on_loss shrink with --codec {}: this compression cannot follow a ring that "
        "shrinks (its state is per ring size); use --codec plain, or --allreduce_on_loss fail",
        job.codec));
  }
  // --overlap: the bucketed ring (psgd/allreduce_overlap.h).
  if (job.bucket_mb > 0 && !job.overlap) {
    throw ConfigError(
        "--bucket_mb without --overlap: buckets are what --overlap sums one at a "
        "time; add --overlap or drop --bucket_mb");
  }
  if (!job.overlap) return;
  if (job.allreduce_backend != "ring") {
    throw ConfigError(fmt::format(
        "--overlap with --allreduce_backend {}: its allreduce is one blocking call, it cannot "
        "start while backward runs; use --allreduce_backend ring",
        job.allreduce_backend));
  }
  if (shrinks(job)) {
    throw ConfigError(
        "--overlap with --allreduce_on_loss shrink: a ring re-formed in the middle of an "
        "iteration would have to re-form every bucket's; use --allreduce_on_loss fail, or drop "
        "--overlap");
  }
  if (entry != nullptr && !entry->buckets) {
    throw ConfigError(fmt::format(
        "--overlap with --codec {}: it sums whole matrices in rounds of its own, not bucket by "
        "bucket; use --codec plain or fp16, or drop --overlap",
        job.codec));
  }
}

// ssgd lost a worker it cannot do without: every round waits for all of them (then backup
// workers would help), or fewer are left than a round waits for.
LossHint ssgd_loss_hint(const StrategyJob& job, int workers_left) {
  if (job.node_count == 1) return {};  // its only worker
  if (job.wait_for > 0 && job.wait_for < job.node_count) {
    return {fmt::format(" (each round needs --wait_for {} gradients and {} {} left)", job.wait_for,
                        workers_left, workers_left == 1 ? "worker is" : "workers are")};
  }
  return {" (--wait_for k < node_count lets ssgd carry on with the survivors)",
          [](StrategyJob& j) { j.wait_for = j.node_count - 1; }};
}

// Only psgd's ring can re-form; a Gloo or shm group cannot change its members (and the whole
// job's checks refuse the hint then, as they do for compressions that cannot shrink).
LossHint allreduce_loss_hint(const StrategyJob& job, int /*workers_left*/) {
  if (job.node_count == 1) return {};
  return {" (--allreduce_on_loss shrink lets the others carry on)",
          [](StrategyJob& j) { j.allreduce_on_loss = "shrink"; }};
}

constexpr StrategyEntry kStrategies[] = {
    {.name = "ssgd",
     .summary = "synchronous rounds: the server averages every worker's gradient, then sends the "
                "new parameters",
     .options = kSsgdOptions,
     .on_loss_hint = ssgd_loss_hint,
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<SsgdServer>(schedule, context,
                                           SsgdOptions{.wait_for = job.wait_for});
     },
     .make_worker = [](const StrategyJob& job, const Schedule& schedule,
                       WorkerContext context) -> std::unique_ptr<WorkerRole> {
       return std::make_unique<GradientWorker>(context, ssgd_worker_options(job, schedule));
     },
     .validate = validate_ssgd},
    {.name = "asgd",
     .summary = "asynchronous: one server update per gradient, nobody waits",
     .per_worker_updates = true,
     .auto_momentum = AutoMomentum::kWorker,
     .options = kAsgdOptions,
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<AsgdServer>(schedule, context, asgd_options(job));
     },
     .make_worker = gradient_worker,
     .validate = validate_asgd},
    {.name = "ssp",
     .summary = "stale synchronous parallel: asynchronous within --staleness iterations of the "
                "slowest worker",
     .per_worker_updates = true,
     .auto_momentum = AutoMomentum::kWorker,
     .options = kSspOptions,
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<SspServer>(
           schedule, context,
           SspOptions{.staleness = job.ssp_staleness(), .staleness_lr = job.staleness_lr});
     },
     .make_worker = gradient_worker},
    {.name = "local_sgd",
     .summary = "local SGD: every worker takes --sync_period optimiser steps, then the server "
                "averages the models",
     .auto_momentum = AutoMomentum::kServer,
     .worker_momentum = false,
     .options = kLocalSgdOptions,
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<LocalSgdServer>(schedule, context, local_sgd_options(job));
     },
     .make_worker = [](const StrategyJob& job, const Schedule& schedule,
                       WorkerContext context) -> std::unique_ptr<WorkerRole> {
       return std::make_unique<LocalSgdWorker>(context, schedule, local_sgd_options(job),
                                               optimizer_spec(job, schedule));
     }},
    {.name = "allreduce",
     .summary = "no parameter server: the workers average their gradients among themselves "
                "(--allreduce_backend) and each applies the same update",
     .topology = Topology::kPeerToPeer,
     .worker_momentum = false,  // its workers apply the momentum in their own optimiser
     .compressors = false,
     .allreduce_compressions = true,
     .server_holds_model = false,
     .options = kAllreduceOptions,
     .on_loss_hint = allreduce_loss_hint,
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<AllreduceServer>(schedule, context, shrinks(job));
     },
     .make_worker = [](const StrategyJob& job, const Schedule& schedule,
                       WorkerContext context) -> std::unique_ptr<WorkerRole> {
       auto compression = make_allreduce_compression(job, schedule, context);
       if (job.overlap) {
         return std::make_unique<BucketedAllreduceWorker>(
             context, schedule, optimizer_spec(job, schedule), RingOptions{},
             std::move(compression), bucket_options(job));
       }
       return std::make_unique<AllreduceWorker>(context, schedule, optimizer_spec(job, schedule),
                                                RingOptions{}, std::move(compression),
                                                shrinks(job));
     },
     .validate = validate_allreduce},
    {.name = "broadcast",
     .summary = "synchronous all-to-all: every worker sends its encoded gradient to every other "
                "and each applies the average",
     .topology = Topology::kPeerToPeer,
     .server_holds_model = false,
     .make_server = [](const StrategyJob&, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       return std::make_unique<AllreduceServer>(schedule, context);
     },
     .make_worker = [](const StrategyJob& job, const Schedule& schedule,
                       WorkerContext context) -> std::unique_ptr<WorkerRole> {
       return std::make_unique<BroadcastWorker>(context, schedule, optimizer_spec(job, schedule));
     }},
};

}  // namespace

std::span<const StrategyEntry> strategy_table() {
  return kStrategies;
}

const StrategyEntry* find_strategy(std::string_view name) {
  for (const StrategyEntry& e : kStrategies)
    if (e.name == name) return &e;
  return nullptr;
}

const StrategyEntry& strategy_of(const StrategyJob& job) {
  if (const StrategyEntry* e = find_strategy(job.psgd)) return *e;
  throw ConfigError(fmt::format("--psgd {}: unknown value; choose one of: {}", job.psgd,
                                fmt::join(strategy_names(), ", ")));
}

std::vector<std::string> strategy_names() {
  std::vector<std::string> v;
  for (const StrategyEntry& e : kStrategies)
    v.emplace_back(e.name);
  return v;
}

}  // namespace psgd
