#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "core/error.h"
#include "nn/partition.h"

namespace psgd::nn {
namespace {

TEST(IidBlocks, SizesFollowTheRemainderRule) {
  const auto blocks = iid_blocks(10, 3, 7);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].size(), 4u);
  EXPECT_EQ(blocks[1].size(), 3u);
  EXPECT_EQ(blocks[2].size(), 3u);

  const auto many = iid_blocks(2, 4, 7);
  EXPECT_EQ(many[0].size(), 1u);
  EXPECT_EQ(many[1].size(), 1u);
  EXPECT_TRUE(many[2].empty());
  EXPECT_TRUE(many[3].empty());
}

TEST(IidBlocks, DisjointCoveringAndSorted) {
  const auto blocks = iid_blocks(1000, 7, 42);
  std::vector<std::int64_t> all;
  for (const auto& b : blocks) {
    EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
    all.insert(all.end(), b.begin(), b.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), 1000u);
  for (std::int64_t i = 0; i < 1000; ++i)
    EXPECT_EQ(all[i], i);
}

TEST(IidBlocks, DeterministicPerSeed) {
  EXPECT_EQ(iid_blocks(100, 4, 1), iid_blocks(100, 4, 1));
  EXPECT_NE(iid_blocks(100, 4, 1), iid_blocks(100, 4, 2));
  // Shuffled, not a contiguous split.
  std::vector<std::int64_t> first_quarter(25);
  for (int i = 0; i < 25; ++i)
    first_quarter[i] = i;
  EXPECT_NE(iid_blocks(100, 4, 1)[0], first_quarter);
}

TEST(IidBlocks, RejectsBadArguments) {
  EXPECT_THROW(iid_blocks(10, 0, 1), ConfigError);
  EXPECT_THROW(iid_blocks(-1, 2, 1), ConfigError);
}

// Horovod's split: rank r of n gets rows [r*base + min(r, extra), ...) with base = N / n and
// extra = N % n, in file order.
TEST(ContiguousBlocks, ConsecutiveRowsInFileOrderWithTheRemainderOnTheFirstBlocks) {
  for (std::int64_t n : {0, 1, 7, 10, 11, 1000, 1003}) {
    for (int k : {1, 2, 3, 4, 7}) {
      const auto blocks = contiguous_blocks(n, k);
      ASSERT_EQ(blocks.size(), static_cast<std::size_t>(k));
      const std::int64_t base = n / k;
      const std::int64_t extra = n % k;
      std::int64_t next = 0;
      for (int b = 0; b < k; ++b) {
        const std::int64_t start = b * base + std::min<std::int64_t>(b, extra);
        ASSERT_EQ(static_cast<std::int64_t>(blocks[b].size()), base + (b < extra ? 1 : 0))
            << n << " rows, " << k << " blocks, block " << b;
        for (std::int64_t i = 0; i < static_cast<std::int64_t>(blocks[b].size()); ++i) {
          EXPECT_EQ(blocks[b][static_cast<std::size_t>(i)], start + i);
          EXPECT_EQ(blocks[b][static_cast<std::size_t>(i)], next++);
        }
      }
      EXPECT_EQ(next, n);  // every row exactly once
    }
  }
  EXPECT_EQ(contiguous_blocks(10, 3),
            (std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6}, {7, 8, 9}}));
}

TEST(ContiguousBlocks, RejectsBadArguments) {
  EXPECT_THROW(contiguous_blocks(10, 0), ConfigError);
  EXPECT_THROW(contiguous_blocks(-1, 2), ConfigError);
}

TEST(PlaceBlocks, RedundancyOneIsAPlainSplit) {
  const Placement p = place_blocks(4, 1);
  EXPECT_EQ(p.num_workers, 4);
  EXPECT_EQ(p.redundancy, 1);
  ASSERT_EQ(p.num_blocks(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(p.blocks_of_worker[i], std::vector<int>{i});
    EXPECT_EQ(p.workers_of_block[i], std::vector<int>{i});
  }
}

TEST(PlaceBlocks, OneBlockPerSubset) {
  const Placement p = place_blocks(4, 2);
  ASSERT_EQ(p.num_blocks(), 6);
  const std::vector<std::vector<int>> expected = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  EXPECT_EQ(p.workers_of_block, expected);
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(p.blocks_of_worker[w].size(), 3u);
    for (int b : p.blocks_of_worker[w]) {
      const auto& holders = p.workers_of_block[b];
      EXPECT_NE(std::find(holders.begin(), holders.end(), w), holders.end());
    }
  }
  EXPECT_EQ(p.blocks_of_worker[0], (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.blocks_of_worker[3], (std::vector<int>{2, 4, 5}));

  const Placement full = place_blocks(3, 3);
  ASSERT_EQ(full.num_blocks(), 1);
  EXPECT_EQ(full.workers_of_block[0], (std::vector<int>{0, 1, 2}));

  const Placement p53 = place_blocks(5, 3);
  EXPECT_EQ(p53.num_blocks(), 10);
  for (const auto& blocks : p53.blocks_of_worker)
    EXPECT_EQ(blocks.size(), 6u);  // C(4, 2)
}

TEST(PlaceBlocks, RejectsBadArguments) {
  EXPECT_THROW(place_blocks(4, 5), ConfigError);
  EXPECT_THROW(place_blocks(4, 0), ConfigError);
  EXPECT_THROW(place_blocks(0, 1), ConfigError);
  EXPECT_THROW(place_blocks(40, 20), ConfigError);  // C(40, 20) ~ 1.4e11 blocks
  EXPECT_NO_THROW(place_blocks(1000, 1));
}

TEST(PlaceFractionalRepetition, GroupsOfRShareRBlocks) {
  const Placement p = place_fractional_repetition(6, 3);
  ASSERT_EQ(p.num_blocks(), 6);
  for (int w = 0; w < 6; ++w) {
    const int first = w < 3 ? 0 : 3;
    EXPECT_EQ(p.blocks_of_worker[w], (std::vector<int>{first, first + 1, first + 2}));
    EXPECT_EQ(p.workers_of_block[w], (std::vector<int>{first, first + 1, first + 2}));
  }
  EXPECT_EQ(place_fractional_repetition(4, 1).blocks_of_worker[2], std::vector<int>{2});
  try {
    place_fractional_repetition(6, 4);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--redundancy 4 with --node_count 6"), std::string::npos);
  }
  EXPECT_THROW(place_fractional_repetition(4, 5), ConfigError);
  EXPECT_THROW(place_fractional_repetition(4, 0), ConfigError);
}

TEST(WorkerSamples, ConcatenatesTheWorkersBlocks) {
  const Placement p = place_blocks(3, 2);  // blocks {0,1}, {0,2}, {1,2}
  const auto blocks = iid_blocks(9, p.num_blocks(), 3);
  const auto w1 = worker_samples(p, blocks, 1);  // blocks 0 and 2
  std::vector<std::int64_t> expected = blocks[0];
  expected.insert(expected.end(), blocks[2].begin(), blocks[2].end());
  EXPECT_EQ(w1, expected);

  std::multiset<std::int64_t> counts;
  for (int w = 0; w < 3; ++w) {
    for (auto s : worker_samples(p, blocks, w))
      counts.insert(s);
  }
  for (std::int64_t s = 0; s < 9; ++s)
    EXPECT_EQ(counts.count(s), 2u);  // redundancy 2

  EXPECT_THROW(worker_samples(p, blocks, 3), ConfigError);
  EXPECT_THROW(worker_samples(p, iid_blocks(9, 2, 3), 0), ConfigError);
}

// 10 classes of 300 samples each, interleaved.
std::vector<std::int64_t> ten_classes(int per_class = 300) {
  std::vector<std::int64_t> labels;
  for (int i = 0; i < 10 * per_class; ++i)
    labels.push_back(i % 10);
  return labels;
}

void expect_exact_cover(const std::vector<std::vector<std::int64_t>>& blocks, std::size_t n) {
  std::vector<std::int64_t> all;
  for (const auto& b : blocks) {
    EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
    all.insert(all.end(), b.begin(), b.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), n);
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(all[i], static_cast<std::int64_t>(i));
}

// Mean over blocks of the largest class share in the block.
double mean_dominant_share(const std::vector<std::int64_t>& labels,
                           const std::vector<std::vector<std::int64_t>>& blocks) {
  double sum = 0;
  for (const auto& b : blocks) {
    const auto h = label_histogram(labels, b, 10);
    sum += static_cast<double>(*std::max_element(h.begin(), h.end())) / b.size();
  }
  return sum / blocks.size();
}

TEST(DirichletBlocks, CoverEverySampleOnceAndFollowAlpha) {
  const auto labels = ten_classes();
  const auto skewed = dirichlet_blocks(labels, 10, 8, 0.1, 3);
  const auto mild = dirichlet_blocks(labels, 10, 8, 1000.0, 3);
  expect_exact_cover(skewed, labels.size());
  expect_exact_cover(mild, labels.size());
  for (const auto& b : skewed)
    EXPECT_FALSE(b.empty());
  // alpha = 0.1: a few classes dominate each block; alpha = 1000: nearly uniform.
  EXPECT_GT(mean_dominant_share(labels, skewed), 0.35);  // iid: about 0.1
  EXPECT_LT(mean_dominant_share(labels, mild), 0.15);
  EXPECT_EQ(dirichlet_blocks(labels, 10, 8, 0.1, 3), skewed);  // deterministic per seed
  EXPECT_NE(dirichlet_blocks(labels, 10, 8, 0.1, 4), skewed);
  EXPECT_THROW(dirichlet_blocks(labels, 10, 8, 0.0, 3), ConfigError);
  EXPECT_THROW(dirichlet_blocks({0, 11}, 10, 2, 1.0, 3), ConfigError);
}

TEST(ShardBlocks, EachBlockHoldsAtMostItsShardsLabels) {
  const auto labels = ten_classes(100);
  // 5 blocks x 2 shards of 100 samples: each shard is exactly one class.
  const auto blocks = shard_blocks(labels, 5, 2, 9);
  expect_exact_cover(blocks, labels.size());
  for (const auto& b : blocks) {
    const auto h = label_histogram(labels, b, 10);
    EXPECT_LE(std::count_if(h.begin(), h.end(), [](auto c) { return c > 0; }), 2);
    EXPECT_EQ(b.size(), 200u);
  }
  EXPECT_EQ(shard_blocks(labels, 5, 2, 9), blocks);
  // Uneven sizes still cover exactly once.
  expect_exact_cover(shard_blocks(ten_classes(37), 3, 4, 1), 370);
}

TEST(NonIid, WithRedundancyEveryBlockIsHeldByRWorkers) {
  const auto labels = ten_classes();
  const Placement p = place_blocks(4, 2);
  const auto blocks = dirichlet_blocks(labels, 10, p.num_blocks(), 0.5, 1);
  std::vector<int> held(labels.size(), 0);
  for (int w = 0; w < 4; ++w) {
    for (auto s : worker_samples(p, blocks, w))
      ++held[s];
  }
  EXPECT_TRUE(std::all_of(held.begin(), held.end(), [](int c) { return c == 2; }));
}

}  // namespace
}  // namespace psgd::nn
