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

// The sample indices of every block the worker holds, concatenated in block order.
std::vector<std::int64_t> worker_samples(const Placement& placement,
                                         const std::vector<std::vector<std::int64_t>>& blocks,
                                         int worker);

}  // namespace psgd::nn
