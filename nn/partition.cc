#include "nn/partition.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
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

// Uniform double in (0, 1).
double open_unit(Rng& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

double standard_normal(Rng& rng) {
  // Box-Muller; portable, unlike std::normal_distribution (draws in a fixed order).
  const double u1 = open_unit(rng);
  const double u2 = open_unit(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// Gamma(shape, 1): Marsaglia & Tsang 2000, with the shape < 1 boost Gamma(a) = Gamma(a+1) U^(1/a).
double gamma_sample(Rng& rng, double shape) {
  if (shape < 1.0) {
    const double g = gamma_sample(rng, shape + 1.0);
    return g * std::pow(open_unit(rng), 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = standard_normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = open_unit(rng);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

void sort_blocks(std::vector<std::vector<std::int64_t>>& blocks) {
  for (auto& b : blocks)
    std::sort(b.begin(), b.end());
}

void check_labels(const std::vector<std::int64_t>& labels, int num_classes) {
  for (std::int64_t l : labels) {
    if (l < 0 || l >= num_classes) {
      throw ConfigError(fmt::format("label {} outside [0, {})", l, num_classes));
    }
  }
}

}  // namespace

std::vector<std::vector<std::int64_t>> dirichlet_blocks(const std::vector<std::int64_t>& labels,
                                                        int num_classes, int num_blocks,
                                                        double alpha, std::uint64_t seed) {
  if (num_blocks < 1) throw ConfigError(fmt::format("dirichlet_blocks: {} blocks", num_blocks));
  if (!(alpha > 0)) throw ConfigError(fmt::format("--dirichlet_alpha {}: must be positive", alpha));
  check_labels(labels, num_classes);
  std::vector<std::vector<std::int64_t>> by_class(static_cast<std::size_t>(num_classes));
  for (std::size_t i = 0; i < labels.size(); ++i)
    by_class[labels[i]].push_back(static_cast<std::int64_t>(i));

  Rng rng(seed);
  for (auto& members : by_class)
    shuffle(std::span<std::int64_t>(members), rng);
  constexpr int kAttempts = 1000;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::vector<std::vector<std::int64_t>> blocks(static_cast<std::size_t>(num_blocks));
    for (const auto& members : by_class) {
      std::vector<double> p(static_cast<std::size_t>(num_blocks));
      double total = 0;
      for (double& x : p)
        total += x = gamma_sample(rng, alpha);
      if (!(total > 0)) {  // every draw underflowed (tiny alpha): no preference
        std::fill(p.begin(), p.end(), 1.0);
        total = static_cast<double>(num_blocks);
      }
      // Cut points at the rounded cumulative proportions: every sample lands in exactly one block.
      const auto n = static_cast<double>(members.size());
      double cumulative = 0;
      std::size_t from = 0;
      for (int b = 0; b < num_blocks; ++b) {
        cumulative += p[b] / total;
        const auto to =
            b + 1 == num_blocks
                ? members.size()
                : std::min(members.size(), static_cast<std::size_t>(std::llround(cumulative * n)));
        blocks[b].insert(blocks[b].end(), members.begin() + from, members.begin() + to);
        from = std::max(from, to);
      }
    }
    if (labels.size() < static_cast<std::size_t>(num_blocks) ||
        std::none_of(blocks.begin(), blocks.end(), [](const auto& b) { return b.empty(); })) {
      sort_blocks(blocks);
      return blocks;
    }
  }
  throw ConfigError(fmt::format(
      "--dirichlet_alpha {}: {} draws for {} blocks of {} samples each left a block empty; use "
      "a larger alpha or fewer blocks",
      alpha, kAttempts, num_blocks, labels.size()));
}

std::vector<std::vector<std::int64_t>> shard_blocks(const std::vector<std::int64_t>& labels,
                                                    int num_blocks, int shards_per_block,
                                                    std::uint64_t seed) {
  if (num_blocks < 1 || shards_per_block < 1) {
    throw ConfigError(
        fmt::format("shard_blocks: {} blocks of {} shards", num_blocks, shards_per_block));
  }
  std::vector<std::int64_t> order(labels.size());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  Rng rng(seed);
  shuffle(std::span<std::int64_t>(order), rng);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return labels[a] < labels[b]; });
  const std::int64_t shards = static_cast<std::int64_t>(num_blocks) * shards_per_block;
  std::vector<std::int64_t> shard_ids(static_cast<std::size_t>(shards));
  std::iota(shard_ids.begin(), shard_ids.end(), std::int64_t{0});
  shuffle(std::span<std::int64_t>(shard_ids), rng);
  const auto n = static_cast<std::int64_t>(order.size());
  std::vector<std::vector<std::int64_t>> blocks(static_cast<std::size_t>(num_blocks));
  for (std::int64_t k = 0; k < shards; ++k) {
    const std::int64_t shard = shard_ids[k];
    // Shard boundaries at floor(shard * n / shards): sizes differ by at most one.
    const std::int64_t from = shard * n / shards;
    const std::int64_t to = (shard + 1) * n / shards;
    auto& block = blocks[k / shards_per_block];
    block.insert(block.end(), order.begin() + from, order.begin() + to);
  }
  sort_blocks(blocks);
  return blocks;
}

std::vector<std::int64_t> label_histogram(const std::vector<std::int64_t>& labels,
                                          const std::vector<std::int64_t>& indices,
                                          int num_classes) {
  std::vector<std::int64_t> h(static_cast<std::size_t>(num_classes), 0);
  for (std::int64_t i : indices) {
    const std::int64_t l = labels.at(static_cast<std::size_t>(i));
    if (l >= 0 && l < num_classes) ++h[l];
  }
  return h;
}

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

std::vector<std::vector<std::int64_t>> contiguous_blocks(std::int64_t num_samples, int num_blocks) {
  if (num_blocks < 1) throw ConfigError(fmt::format("contiguous_blocks: {} blocks", num_blocks));
  if (num_samples < 0) {
    throw ConfigError(fmt::format("contiguous_blocks: {} samples", num_samples));
  }
  std::vector<std::vector<std::int64_t>> blocks(static_cast<std::size_t>(num_blocks));
  const std::int64_t base = num_samples / num_blocks;
  const std::int64_t extra = num_samples % num_blocks;
  std::int64_t next = 0;
  for (int b = 0; b < num_blocks; ++b) {
    const std::int64_t len = base + (b < extra ? 1 : 0);
    blocks[b].resize(static_cast<std::size_t>(len));
    std::iota(blocks[b].begin(), blocks[b].end(), next);
    next += len;
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

Placement place_fractional_repetition(int num_workers, int redundancy) {
  if (num_workers < 1 || redundancy < 1 || redundancy > num_workers ||
      num_workers % redundancy != 0) {
    throw ConfigError(fmt::format(
        "--redundancy {} with --node_count {}: the fractional-repetition layout needs a "
        "redundancy between 1 and node_count that divides node_count",
        redundancy, num_workers));
  }
  Placement p;
  p.num_workers = num_workers;
  p.redundancy = redundancy;
  p.blocks_of_worker.resize(static_cast<std::size_t>(num_workers));
  p.workers_of_block.resize(static_cast<std::size_t>(num_workers));
  for (int w = 0; w < num_workers; ++w) {
    const int first = (w / redundancy) * redundancy;  // the group's first worker and block
    for (int k = 0; k < redundancy; ++k) {
      p.blocks_of_worker[static_cast<std::size_t>(w)].push_back(first + k);
      p.workers_of_block[static_cast<std::size_t>(w)].push_back(first + k);
    }
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
