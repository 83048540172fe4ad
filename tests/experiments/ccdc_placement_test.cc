// ccdc's combinatorics (psgd/coded/ccdc.h) and the data placement the server sends
// (nn::place_blocks) must name the same blocks in the same order: a worker's block streams answer
// in that order.
#include <gtest/gtest.h>

#include "experiments/placement.h"
#include "nn/partition.h"
#include "psgd/coded/ccdc.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

TEST(CcdcPlacement, LayoutBlocksAreThePlacementBlocks) {
  for (int n = 2; n <= 7; ++n) {
    for (int r = 1; r < n; ++r) {
      const CcdcLayout layout(n, r, 16, true);
      const nn::Placement placement = nn::place_blocks(n, r);
      ASSERT_EQ(layout.blocks(), placement.num_blocks()) << n << " " << r;
      for (int b = 0; b < layout.blocks(); ++b)
        EXPECT_EQ(layout.block(b), placement.workers_of_block[static_cast<std::size_t>(b)]);
      for (int w = 0; w < n; ++w)
        EXPECT_EQ(layout.blocks_of(w), placement.blocks_of_worker[static_cast<std::size_t>(w)]);
    }
  }
}

TEST(CcdcPlacement, CcdcUsesRSubsetBlocksWithBlockStreams) {
  JobSpec spec;
  spec.psgd = "broadcast";
  spec.codec = "ccdc";
  spec.node_count = 4;
  spec.redundancy = 2;
  EXPECT_TRUE(uses_block_streams(spec));
  EXPECT_EQ(block_layout(spec), BlockLayout::kSubsets);  // not the fractional repetition
  spec.psgd = "ssgd";
  spec.codec = "gc";
  EXPECT_EQ(block_layout(spec), BlockLayout::kFractionalRepetition);
  spec.codec = "plain";
  EXPECT_FALSE(uses_block_streams(spec));
}

// --block_assignment contiguous over the rows left after a validation hold-out: each worker
// holds consecutive training rows in file order, the first ones one row more, whatever the seed.
TEST(ContiguousPlacement, WorkersHoldConsecutiveTrainingRowsWhateverTheSeed) {
  nn::Dataset train;
  train.labels.assign(23, 0);
  const std::vector<std::int64_t> rows{0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 15, 16, 17, 19, 20, 22};
  JobSpec spec;
  spec.node_count = 3;
  spec.block_assignment = "contiguous";
  const std::vector<std::vector<std::int64_t>> want{
      {0, 1, 2, 4, 5, 6}, {8, 9, 10, 12, 13, 15}, {16, 17, 19, 20, 22}};
  for (std::uint64_t seed : {1, 2, 99}) {
    spec.seed = seed;
    const DataPlacement d = place_data(spec, train, rows);
    for (int w = 0; w < 3; ++w)
      EXPECT_EQ(d.samples_of(w), want[static_cast<std::size_t>(w)]) << "seed " << seed;
  }
  spec.block_assignment = "iid";  // the contrast: iid shuffles membership
  EXPECT_NE(place_data(spec, train, rows).samples_of(0), want[0]);
}

}  // namespace
}  // namespace psgd
