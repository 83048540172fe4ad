#include "psgd/coding_table.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "psgd/allreduce.h"
#include "psgd/coded/ccdc.h"
#include "psgd/coded/gc.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

GcOptions gc_options(const StrategyJob& job) {
  return GcOptions{.redundancy = job.redundancy, .naive = job.codec == "ndc"};
}

// Coded schemes send exact fp32 (their coding is what they sum or XOR): no compression around it.
void refuse_compression_options(const StrategyJob& job, const char* what) {
  if (job.error_feedback == "on" || job.momentum_at == "worker") {
    throw ConfigError(
        fmt::format("--codec {} sends exact fp32 {}: it takes neither --error_feedback on nor "
                    "--momentum_at worker",
                    job.codec, what));
  }
}

void validate_gradient_coding(const StrategyJob& job) {
  if (job.codec == "gc" && job.redundancy < 2) {
    throw ConfigError(fmt::format(
        "--codec gc with --redundancy {}: gradient coding needs every block on at least 2 "
        "workers (--redundancy 2..node_count)",
        job.redundancy));
  }
  if (job.node_count % job.redundancy != 0) {
    throw ConfigError(fmt::format(
        "--codec {} with --redundancy {} and --node_count {}: the fractional-repetition layout "
        "needs the redundancy to divide node_count",
        job.codec, job.redundancy, job.node_count));
  }
  if (job.wait_for > 0) {
    throw ConfigError(fmt::format(
        "--codec {} with --wait_for {}: the {} server closes a round as soon as every group of "
        "--redundancy workers has answered; drop --wait_for",
        job.codec, job.wait_for, job.codec));
  }
  refuse_compression_options(job, "sums");
}

void validate_ccdc(const StrategyJob& job) {
  check_ccdc_layout(job.node_count, job.redundancy);  // ConfigError naming both flags
  refuse_compression_options(job, "block gradients");
}

std::unique_ptr<ServerRole> gc_server(const StrategyJob& job, const Schedule& schedule,
                                      ServerContext context) {
  return std::make_unique<GcServer>(schedule, context, gc_options(job));
}
std::unique_ptr<WorkerRole> gc_worker(const StrategyJob& job, const Schedule&,
                                      WorkerContext context) {
  return std::make_unique<GcWorker>(context, gc_options(job));
}

constexpr std::string_view kCcdcAlsoUnder[] = {"ssgd"};

constexpr CodingEntry kCodings[] = {
    {.name = "gc",
     .summary = "gradient coding (Tandon et al. 2017): exact sums decoded from any n - r + 1 "
                "workers, r - 1 stragglers per group never waited for",
     .strategy = "ssgd",
     .strategy_reason = "gradient coding decodes one synchronous round at a time",
     .layout = BlockLayout::kFractionalRepetition,
     .make_server = gc_server,
     .make_worker = gc_worker,
     .validate = validate_gradient_coding},
    {.name = "ndc",
     .summary = "naive duplication: every block gradient sent in full (gc's baseline)",
     .strategy = "ssgd",
     .strategy_reason = "naive duplication decodes one synchronous round at a time",
     .layout = BlockLayout::kFractionalRepetition,
     .make_server = gc_server,
     .make_worker = gc_worker,
     .validate = validate_gradient_coding},
    {.name = "ccdc",
     .summary = "coded distributed computing (Li et al. 2018): XOR-coded multicasts between the "
                "workers, one block per r-subset",
     .strategy = "broadcast",
     .strategy_reason = "coded multicast is an exchange between the workers",
     .also_under = kCcdcAlsoUnder,
     .layout = BlockLayout::kSubsets,
     .blocks_per_iteration = [](const StrategyJob& job) -> std::uint64_t {
       return binomial_capped(job.node_count, job.redundancy, 1 << 30);
     },
     .make_server = [](const StrategyJob& job, const Schedule& schedule,
                       ServerContext context) -> std::unique_ptr<ServerRole> {
       auto server = std::make_unique<AllreduceServer>(schedule, context);
       // A worker computes one batch of each block it holds: the r-subsets it belongs to.
       server->set_batches_per_iteration(static_cast<std::int64_t>(
           binomial_capped(job.node_count - 1, job.redundancy - 1, 1 << 30)));
       return server;
     },
     .make_worker = [](const StrategyJob& job, const Schedule& schedule,
                       WorkerContext context) -> std::unique_ptr<WorkerRole> {
       return std::make_unique<CcdcWorker>(context, schedule, optimizer_spec(job, schedule),
                                           CcdcOptions{.redundancy = job.redundancy});
     },
     .validate = validate_ccdc},
};

}  // namespace

std::span<const CodingEntry> coding_table() {
  return kCodings;
}

const CodingEntry* find_coding(std::string_view codec) {
  for (const CodingEntry& e : kCodings)
    if (e.name == codec) return &e;
  return nullptr;
}

std::vector<std::string> coding_names() {
  std::vector<std::string> v;
  for (const CodingEntry& e : kCodings)
    v.emplace_back(e.name);
  return v;
}

}  // namespace psgd
