#pragma once
// Coded-redundancy schemes, declared once: ways to spend --redundancy r (each data block held by
// r workers) on the communication itself. They are not codecs of a gradient: each replaces the
// roles of the strategy it runs under with roles that compute per block and code across workers.
// They are selected with --codec, as in Parallel-SGD, whose sweep scripts say `--codec ccdc`.
//
//   gc    gradient coding (Tandon et al. 2017), under ssgd: the server decodes the exact sum from
//         any n - r + 1 workers' coded sums, so r - 1 stragglers per group are never waited for
//   ndc   naive duplication, under ssgd: every block gradient sent in full (gc's baseline)
//   ccdc  coded distributed computing (Li et al. 2018), under the synchronous all-to-all
//         exchange (--psgd broadcast): XOR-coded multicasts between the workers
//
// Parallel-SGD spelled the coded all-to-all `--psgd ssgd --codec ccdc`; it is accepted and
// recorded in its canonical form, --psgd broadcast --codec ccdc (StrategyJob::canonicalize).
//
// Adding a scheme: its roles in psgd/coded/<name>.{h,cc}, one entry in coding_table.cc, tests in
// tests/psgd/.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "psgd/context.h"

namespace psgd {

struct StrategyJob;

// Which workers hold which blocks (nn/partition.h).
enum class BlockLayout {
  kSubsets,               // one block per r-subset of the workers (nn::place_blocks)
  kFractionalRepetition,  // groups of r workers share r blocks (nn::place_fractional_repetition)
};

struct CodingEntry {
  std::string_view name;
  std::string_view summary;
  std::string_view strategy;         // the strategy it runs under (its canonical --psgd)
  std::string_view strategy_reason;  // why it runs under that strategy only, for the refusal
  // Other --psgd spellings meaning the same (Parallel-SGD's), rewritten to `strategy`.
  std::span<const std::string_view> also_under;
  BlockLayout layout = BlockLayout::kSubsets;
  // Its roles implement snapshot()/restore() (--checkpoint_every, --resume); when false,
  // `no_checkpoints_reason` says why for the refusal.
  bool checkpoints = true;
  std::string_view no_checkpoints_reason;
  // The blocks an iteration covers, one batch each (0: node_count, as for any strategy).
  std::uint64_t (*blocks_per_iteration)(const StrategyJob& job) = nullptr;
  std::unique_ptr<ServerRole> (*make_server)(const StrategyJob& job, const Schedule& schedule,
                                             ServerContext context) = nullptr;
  std::unique_ptr<WorkerRole> (*make_worker)(const StrategyJob& job, const Schedule& schedule,
                                             WorkerContext context) = nullptr;
  void (*validate)(const StrategyJob& job) = nullptr;
};

std::span<const CodingEntry> coding_table();
// nullptr when `codec` is not a coded-redundancy scheme.
const CodingEntry* find_coding(std::string_view codec);
std::vector<std::string> coding_names();

}  // namespace psgd
