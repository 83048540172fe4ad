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

}  // namespace
}  // namespace psgd::nn
