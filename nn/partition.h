#pragma once
// Which samples form a block (partition) and which workers hold a block (placement).
//
// Placement follows the original Parallel-SGD "iid" assignment: with redundancy r every r-subset
// of the n workers gets one block of its own, so each block is held by exactly r workers and each
// worker holds C(n-1, r-1) blocks. r = 1 is a plain split, block i on worker i. Torch-free and
// deterministic for a seed on every platform (psgd::Rng + psgd::shuffle).
#include <cstdint>
#include <vector>

namespace psgd::nn {

// Shuffles the indices 0..num_samples-1 with Rng(seed) and cuts them into num_blocks consecutive
// blocks; the first num_samples % num_blocks blocks get one extra sample. Each block's indices
// are then sorted ascending (membership is what is random; sorted blocks read memory in order).
// Throws ConfigError when num_blocks < 1 or num_samples < 0.
std::vector<std::vector<std::int64_t>> iid_blocks(std::int64_t num_samples, int num_blocks,
                                                  std::uint64_t seed);

// Horovod's contiguous split: block b holds the consecutive indices after those of blocks
// 0..b-1, with no shuffling; the first num_samples % num_blocks blocks get one extra sample.
// With redundancy 1 (block i on worker i) worker i reads rows in file order, as a Horovod rank
// with an unshuffled sampler does. Throws ConfigError when num_blocks < 1 or num_samples < 0.
std::vector<std::vector<std::int64_t>> contiguous_blocks(std::int64_t num_samples, int num_blocks);

// Non-iid (label-skewed) partitions, for federated-style experiments. Both cover every index of
// `labels` exactly once, are deterministic for a seed on every platform, and sort each block.
//
// dirichlet_blocks (Hsu et al. 2019): for every class, proportions p ~ Dirichlet(alpha, ...,
// alpha) over the blocks; the class's shuffled samples are cut in those proportions. Small alpha
// (0.1) gives each block a few dominant classes, large alpha (100) approaches iid. Draws are
// repeated (from the same stream) until no block is empty; ConfigError if that keeps failing.
std::vector<std::vector<std::int64_t>> dirichlet_blocks(const std::vector<std::int64_t>& labels,
                                                        int num_classes, int num_blocks,
                                                        double alpha, std::uint64_t seed);

// shard_blocks (McMahan et al. 2017): samples sorted by label (ties in a seeded random order) are
// cut into num_blocks * shards_per_block equal shards, which are dealt to blocks in a seeded
// random order, shards_per_block each. With shards no larger than a class, a block holds at most
// about 2 * shards_per_block labels.
std::vector<std::vector<std::int64_t>> shard_blocks(const std::vector<std::int64_t>& labels,
                                                    int num_blocks, int shards_per_block,
                                                    std::uint64_t seed);

// How many of `indices` carry each label 0..num_classes-1.
std::vector<std::int64_t> label_histogram(const std::vector<std::int64_t>& labels,
                                          const std::vector<std::int64_t>& indices,
                                          int num_classes);

struct Placement {
  int num_workers = 0;
  int redundancy = 1;
  std::vector<std::vector<int>> blocks_of_worker;  // ascending block ids per worker
  std::vector<std::vector<int>> workers_of_block;  // ascending worker ids per block
  int num_blocks() const { return static_cast<int>(workers_of_block.size()); }
};

// One block per r-subset of workers, subsets in lexicographic order (for r = 1: block i on
// worker i). Throws ConfigError when num_workers < 1, redundancy < 1, redundancy > num_workers,
// or C(num_workers, redundancy) > 1,000,000.
Placement place_blocks(int num_workers, int redundancy);

// Fractional repetition (Tandon et al. 2017, "Gradient Coding", §3): num_workers blocks; the
// workers form num_workers / r groups of r consecutive workers, and every worker of group j
// holds the same r blocks j·r .. j·r + r − 1. Any num_workers − r + 1 workers include one worker
// of every group, so their group sums add up to the sum of all blocks. Throws ConfigError naming
// --redundancy and --node_count unless 1 <= r <= num_workers and r divides num_workers.
Placement place_fractional_repetition(int num_workers, int redundancy);

// The sample indices of every block the worker holds, concatenated in block order.
std::vector<std::int64_t> worker_samples(const Placement& placement,
                                         const std::vector<std::vector<std::int64_t>>& blocks,
                                         int worker);

}  // namespace psgd::nn
