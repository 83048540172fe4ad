#include "core/rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace psgd {
namespace {

TEST(Rng, ShuffleIsAPermutationAndDeterministic) {
  std::vector<int> a(100), b(100);
  std::iota(a.begin(), a.end(), 0);
  b = a;
  Rng r1(derive_seed(7, 1)), r2(derive_seed(7, 1));
  shuffle(std::span<int>(a), r1);
  shuffle(std::span<int>(b), r2);
  EXPECT_EQ(a, b);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(sorted[i], i);
  EXPECT_NE(a[0] + a[1] * 100, 0 + 1 * 100);  // moved something
}

TEST(Rng, DerivedSeedsDiffer) {
  EXPECT_NE(derive_seed(1, 0), derive_seed(1, 1));
  EXPECT_NE(derive_seed(1, 0), derive_seed(2, 0));
}

TEST(Rng, UniformBelowStaysInRangeAndCoversIt) {
  Rng rng(3);
  std::vector<int> hits(7, 0);
  for (int i = 0; i < 7000; ++i) {
    auto v = uniform_below(rng, 7);
    ASSERT_LT(v, 7u);
    hits[v]++;
  }
  for (int h : hits)
    EXPECT_GT(h, 800);
}

}  // namespace
}  // namespace psgd
