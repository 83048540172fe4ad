#include "nn/partition.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <span>

#include "core/error.h"
#include "core/rng.h"

namespace psgd::nn {
namespace {

constexpr std::uint64_t kMaxBlocks = 1'000'000;

// C(n, r), saturating just above `cap` so huge values cannot overflow.
std::uint64_t binomial_capped(int n, int r, std::uint64_t cap) {
  r = std::min(r, n - r);
  std::uint64_t c = 1;
  for (int i = 1; i <= r; ++i) {
    // c * (n - r + i) / i is exact at every step; stop once past the cap.
    c = c * static_cast<std::uint64_t>(n - r + i) / static_cast<std::uint64_t>(i);
    if (c > cap) return cap + 1;
  }
  return c;
}

}  // namespace

std::vector<std::vector<std::int64_t>> iid_blocks(std::int64_t num_samples, int num_blocks,
                                                  std::uint64_t seed) {
  if (num_blocks < 1) throw ConfigError(fmt::format("iid_blocks: {} blocks", num_blocks));
  if (num_samples < 0) throw ConfigError(fmt::format("iid_blocks: {} samples", num_samples));

  std::vector<std::int64_t> order(static_cast<std::size_t>(num_samples));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  Rng rng(seed);
  shuffle(std::span<std::int64_t>(order), rng);

  std::vector<std::vector<std::int64_t>> blocks(static_cast<std::size_t>(num_blocks));
  const std::int64_t base = num_samples / num_blocks;
  const std::int64_t extra = num_samples % num_blocks;
  auto it = order.begin();
  for (int b = 0; b < num_blocks; ++b) {
    const std::int64_t len = base + (b < extra ? 1 : 0);
    blocks[b].assign(it, it + len);
    std::sort(blocks[b].begin(), blocks[b].end());
    it += len;
  }
  return blocks;
}

Placement place_blocks(int num_workers, int redundancy) {
  if (num_workers < 1) {
    throw ConfigError(fmt::format("placement needs at least one worker, got {}", num_workers));
  }
  if (redundancy < 1 || redundancy > num_workers) {
    throw ConfigError(
        fmt::format("redundancy must be between 1 and the number of workers ({}), "
                    "got {}",
                    num_workers, redundancy));
  }
  const std::uint64_t count = binomial_capped(num_workers, redundancy, kMaxBlocks);
  if (count > kMaxBlocks) {
    throw ConfigError(fmt::format(
        "redundancy {} with {} workers needs C({}, {}) > {} blocks; use fewer workers or a "
        "redundancy closer to 1 or to the number of workers",
        redundancy, num_workers, num_workers, redundancy, kMaxBlocks));
  }

  Placement p;
  p.num_workers = num_workers;
  p.redundancy = redundancy;
  p.blocks_of_worker.resize(static_cast<std::size_t>(num_workers));
  p.workers_of_block.reserve(count);

  // Enumerate r-subsets in lexicographic order: advance the rightmost index that can move.
  std::vector<int> subset(static_cast<std::size_t>(redundancy));
  std::iota(subset.begin(), subset.end(), 0);
  while (true) {
    const int block = p.num_blocks();
    p.workers_of_block.push_back(subset);
    for (int w : subset)
      p.blocks_of_worker[w].push_back(block);

    int i = redundancy - 1;
    while (i >= 0 && subset[i] == num_workers - redundancy + i)
      --i;
    if (i < 0) break;
    ++subset[i];
    for (int j = i + 1; j < redundancy; ++j)
      subset[j] = subset[j - 1] + 1;
  }
  return p;
}

std::vector<std::int64_t> worker_samples(const Placement& placement,
                                         const std::vector<std::vector<std::int64_t>>& blocks,
                                         int worker) {
  if (worker < 0 || worker >= placement.num_workers) {
    throw ConfigError(fmt::format("worker {} out of range [0, {})", worker, placement.num_workers));
  }
  if (blocks.size() != placement.workers_of_block.size()) {
    throw ConfigError(fmt::format("placement has {} blocks but the partition has {}",
                                  placement.workers_of_block.size(), blocks.size()));
  }
  std::vector<std::int64_t> out;
  std::size_t total = 0;
  for (int b : placement.blocks_of_worker[worker])
    total += blocks[b].size();
  out.reserve(total);
  for (int b : placement.blocks_of_worker[worker]) {
    out.insert(out.end(), blocks[b].begin(), blocks[b].end());
  }
  return out;
}

}  // namespace psgd::nn
