// topk keeps exactly the k largest magnitudes; randk exactly k distinct, agreed coordinates; the
// sparse format picks the smaller index encoding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "codecs/error_feedback.h"
#include "codecs/randk.h"
#include "codecs/sparse.h"
#include "codecs/topk.h"

namespace psgd {
namespace {

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(n);
  for (auto& v : g)
    v = normal(rng);
  return g;
}

// Reference: sort all indices by (|g| desc, index asc) and take k.
std::vector<std::uint64_t> reference_topk(const std::vector<float>& g, std::size_t k) {
  std::vector<std::uint64_t> idx(g.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](auto a, auto b) { return std::fabs(g[a]) > std::fabs(g[b]); });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

TEST(Topk, KIsRoundedRatioAtLeastOne) {
  EXPECT_EQ(sparse_k(1000, 0.01), 10u);
  EXPECT_EQ(sparse_k(10, 0.01), 1u);
  EXPECT_EQ(sparse_k(150, 0.01), 2u);  // round(1.5) = 2
  EXPECT_EQ(sparse_k(7, 1.0), 7u);
  EXPECT_EQ(sparse_k(0, 0.5), 0u);
}

TEST(Topk, SelectsExactlyTheKLargestMagnitudes) {
  std::vector<std::uint64_t> got, scratch;
  for (std::size_t n : {1, 5, 100, 1000, 100000, 1000003}) {
    for (double ratio : {0.001, 0.01, 0.1, 0.5, 1.0}) {
      auto g = gaussian(n, static_cast<std::uint32_t>(n));
      const std::uint64_t k = sparse_k(n, ratio);
      select_topk(g, k, got, scratch);
      ASSERT_EQ(got, reference_topk(g, k)) << n << " " << ratio;
    }
  }
}

TEST(Topk, TiesGoToTheLowerIndexDeterministically) {
  std::vector<float> g(1000, 1.0f);
  for (std::size_t i = 0; i < g.size(); i += 3)
    g[i] = -1.0f;  // same magnitude, other sign
  g[500] = 2.0f;
  std::vector<std::uint64_t> got, scratch;
  select_topk(g, 10, got, scratch);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 500}));
  std::vector<float> zeros(100000, 0.0f);  // all equal: the sample threshold keeps everything
  select_topk(zeros, 3, got, scratch);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{0, 1, 2}));
}

TEST(Topk, SampleMissesTheLargeOnesAndTheSelectionStillIsExact) {
  // The big values sit where the strided sample never looks.
  std::vector<float> g(100000, 0.001f);
  for (std::size_t i = 1; i < g.size(); i += 97)
    g[i] = 5.0f + static_cast<float>(i % 13);
  std::vector<std::uint64_t> got, scratch;
  select_topk(g, 1000, got, scratch);
  EXPECT_EQ(got, reference_topk(g, 1000));
}

TEST(Topk, CodecRoundTripKeepsValuesAtTheirIndices) {
  auto g = gaussian(10000, 9);
  TopkCodec codec(0.01);
  Payload p = codec.encode(g);
  std::vector<float> out(g.size(), 7.0f);
  codec.decode(p, out);
  auto ref = reference_topk(g, 100);
  std::set<std::uint64_t> kept(ref.begin(), ref.end());
  for (std::size_t i = 0; i < g.size(); ++i)
    EXPECT_EQ(out[i], kept.count(i) ? g[i] : 0.0f);
}

TEST(TopkPerTensor, BudgetIsProportionalAtLeastOneAndSumsToK) {
  // The MLP's tensors (784x256 weight, bias 256, 256x10 weight, bias 10) at 1 %.
  const std::vector<std::uint64_t> mlp{200704, 256, 2560, 10};
  const std::uint64_t k = sparse_k(203530, 0.01);  // 2035
  auto b = split_topk_budget(mlp, k);
  EXPECT_EQ(b, (std::vector<std::uint64_t>{2007, 2, 25, 1}));
  EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::uint64_t{0}), k);
  // Every tensor gets one even when its share rounds to 0; the excess is taken from the largest.
  b = split_topk_budget(std::vector<std::uint64_t>{1000, 1, 1, 1}, 4);
  EXPECT_EQ(b, (std::vector<std::uint64_t>{1, 1, 1, 1}));
  b = split_topk_budget(std::vector<std::uint64_t>{90, 5, 5}, 10);
  EXPECT_EQ(b, (std::vector<std::uint64_t>{8, 1, 1}));
  // Capped at the tensor size, the rest goes elsewhere; empty tensors get nothing.
  b = split_topk_budget(std::vector<std::uint64_t>{3, 0, 10}, 12);
  EXPECT_EQ(b, (std::vector<std::uint64_t>{3, 0, 9}));
  // More tensors than budget: one each.
  b = split_topk_budget(std::vector<std::uint64_t>{10, 10, 10}, 2);
  EXPECT_EQ(b, (std::vector<std::uint64_t>{1, 1, 1}));
}

TEST(TopkPerTensor, KeepsExactlyTheKlLargestOfEachTensor) {
  // Tensor 1 has entries 100x larger than tensor 0: a global selection would take only them.
  const std::vector<std::uint64_t> sizes{5000, 300, 1200, 7};
  std::vector<float> g;
  for (std::size_t l = 0; l < sizes.size(); ++l) {
    auto part = gaussian(sizes[l], static_cast<std::uint32_t>(40 + l));
    for (auto& v : part)
      v *= l == 1 ? 100.0f : 1.0f;
    g.insert(g.end(), part.begin(), part.end());
  }
  const std::uint64_t k = sparse_k(g.size(), 0.05);
  const auto budget = split_topk_budget(sizes, k);
  TopkCodec codec(TopkOptions{.ratio = 0.05, .segments = sizes});
  std::vector<float> out(g.size());
  codec.decode(codec.encode(g), out);
  std::uint64_t offset = 0, total = 0;
  for (std::size_t l = 0; l < sizes.size(); ++l) {
    std::vector<float> part(g.begin() + static_cast<std::ptrdiff_t>(offset),
                            g.begin() + static_cast<std::ptrdiff_t>(offset + sizes[l]));
    const auto ref = reference_topk(part, budget[l]);
    const std::set<std::uint64_t> kept(ref.begin(), ref.end());
    for (std::uint64_t i = 0; i < sizes[l]; ++i)
      ASSERT_EQ(out[offset + i], kept.count(i) ? part[i] : 0.0f) << "tensor " << l << " i " << i;
    total += kept.size();
    offset += sizes[l];
  }
  EXPECT_EQ(total, k);
  // Sizes that do not cover the vector: one global selection.
  TopkCodec mismatched(TopkOptions{.ratio = 0.05, .segments = {10, 10}});
  mismatched.decode(mismatched.encode(g), out);
  const auto ref = reference_topk(g, k);
  const std::set<std::uint64_t> kept(ref.begin(), ref.end());
  for (std::size_t i = 0; i < g.size(); ++i)
    ASSERT_EQ(out[i], kept.count(i) ? g[i] : 0.0f);
}

TEST(TopkWarmup, DensityDecaysExponentiallyToTheRatio) {
  // DGC's schedule: 25 % at the start, ratio at the end, geometric in between.
  EXPECT_DOUBLE_EQ(warmup_density(0.01, 0.25, 100, 0), 0.25);
  EXPECT_NEAR(warmup_density(0.01, 0.25, 100, 50), 0.05, 1e-12);  // sqrt(0.25 * 0.01)
  EXPECT_NEAR(warmup_density(0.01, 0.25, 100, 25), 0.25 * std::pow(0.04, 0.25), 1e-12);
  EXPECT_DOUBLE_EQ(warmup_density(0.01, 0.25, 100, 100), 0.01);
  EXPECT_DOUBLE_EQ(warmup_density(0.01, 0.25, 100, 1000), 0.01);
  EXPECT_DOUBLE_EQ(warmup_density(0.01, 0.25, 0, 0), 0.01);  // no warm-up
  EXPECT_DOUBLE_EQ(warmup_density(0.5, 0.25, 100, 0), 0.5);  // start below the ratio: none
  for (std::int64_t t = 1; t < 100; ++t)
    EXPECT_LT(warmup_density(0.01, 0.25, 100, t), warmup_density(0.01, 0.25, 100, t - 1));
  // The codec keeps round(density * n) coordinates at each encode.
  auto g = gaussian(10000, 5);
  TopkCodec codec(TopkOptions{.ratio = 0.01, .warmup_steps = 4, .warmup_ratio = 0.16});
  const std::vector<std::uint64_t> want{1600, 800, 400, 200, 100, 100};
  std::vector<float> out(g.size());
  for (std::uint64_t expected : want) {
    codec.decode(codec.encode(g), out);
    EXPECT_EQ(std::count_if(out.begin(), out.end(), [](float v) { return v != 0.0f; }),
              static_cast<std::ptrdiff_t>(expected));
  }
}

TEST(SparseFormat, PicksTheSmallerIndexEncoding) {
  const std::uint64_t n = 10000;
  std::vector<std::uint64_t> sparse_idx{3, 500, 9999};
  std::vector<float> v3{1, 2, 3};
  EXPECT_EQ(sparse::choose_encoding(n, sparse_idx), sparse::IndexEncoding::kDelta);
  Payload p = sparse::encode(n, sparse_idx, v3);
  EXPECT_EQ(p.bytes[0], 0);
  EXPECT_EQ(p.bytes.size(), 1 + 8 + 12 + 1 + 2 + 2);  // varints 3, 496, 9498
  std::vector<std::uint64_t> dense_idx;
  for (std::uint64_t i = 0; i < n; i += 2)
    dense_idx.push_back(i);
  std::vector<float> vd(dense_idx.size(), 1.0f);
  EXPECT_EQ(sparse::choose_encoding(n, dense_idx), sparse::IndexEncoding::kBitmap);
  Payload q = sparse::encode(n, dense_idx, vd);
  EXPECT_EQ(q.bytes[0], 1);
  EXPECT_EQ(q.bytes.size(), 1 + 8 + 4 * vd.size() + n / 8);
  std::vector<float> out(n, 0.0f);
  sparse::decode_add(q, out, 2.0f, "test");
  for (std::uint64_t i = 0; i < n; ++i)
    EXPECT_EQ(out[i], i % 2 == 0 ? 2.0f : 0.0f);
  // Crossover: one byte per index (gaps < 128) against n/8 bytes of bitmap.
  std::vector<std::uint64_t> every8;
  for (std::uint64_t i = 0; i < n; i += 8)
    every8.push_back(i);  // n/8 varint bytes == n/8 bitmap bytes: tie goes to delta
  EXPECT_EQ(sparse::choose_encoding(n, every8), sparse::IndexEncoding::kDelta);
  every8.push_back(1);
  std::sort(every8.begin(), every8.end());
  EXPECT_EQ(sparse::choose_encoding(n, every8), sparse::IndexEncoding::kBitmap);
}

TEST(Randk, KDistinctIndicesThatSenderAndReceiverAgreeOn) {
  const std::size_t n = 5000;
  RandkCodec sender(0.02, 77);
  RandkCodec other_receiver(0.5, 1);  // the receiver's own options do not matter
  std::set<std::uint64_t> seen_union;
  for (int step = 0; step < 5; ++step) {
    auto g = gaussian(n, 20 + step);
    Payload p = sender.encode(g);
    EXPECT_EQ(p.bytes.size(), 24 + 4 * 100u);
    std::vector<float> out(n, 0.0f);
    other_receiver.decode(p, out);
    std::vector<std::uint64_t> idx;
    randk_indices(77, static_cast<std::uint64_t>(step), n, 100, idx);
    EXPECT_EQ(idx.size(), 100u);
    EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
    EXPECT_EQ(std::set<std::uint64_t>(idx.begin(), idx.end()).size(), 100u);
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const bool kept = std::binary_search(idx.begin(), idx.end(), i);
      EXPECT_EQ(out[i], kept ? g[i] : 0.0f);
      nonzero += out[i] != 0.0f;
    }
    EXPECT_EQ(nonzero, 100u);
    seen_union.insert(idx.begin(), idx.end());
  }
  EXPECT_GT(seen_union.size(), 450u);  // a new draw each step
}

TEST(Randk, IndicesAreUniform) {
  const std::uint64_t n = 100, k = 10;
  std::vector<int> hits(n, 0);
  std::vector<std::uint64_t> idx;
  for (std::uint64_t step = 0; step < 20000; ++step) {
    randk_indices(5, step, n, k, idx);
    for (auto i : idx)
      ++hits[i];
  }
  for (int h : hits)
    EXPECT_NEAR(h, 2000, 250);  // mean 2000, sd ~42
  randk_indices(5, 0, n, n, idx);
  EXPECT_EQ(idx.size(), n);
}

// With error feedback, what a receiver decodes over the steps plus the sender's residual is
// exactly what the sender was given (no mass is lost or counted twice), and the receiver finds
// the same coordinates without being told them.
TEST(Randk, ErrorFeedbackConservesTheGradientAtTheReceiver) {
  const std::size_t n = 3000;
  ErrorFeedbackCodec sender(std::make_unique<RandkCodec>(0.01, 9));
  RandkCodec receiver(0.5, 1);
  std::vector<double> given(n, 0.0), received(n, 0.0);
  std::vector<float> out(n);
  for (int step = 0; step < 300; ++step) {
    const auto g = gaussian(n, 100 + step);
    for (std::size_t i = 0; i < n; ++i)
      given[i] += g[i];
    receiver.decode(sender.encode(g), out);
    for (std::size_t i = 0; i < n; ++i)
      received[i] += out[i];
  }
  const auto residual = sender.residual();
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_NEAR(received[i] + residual[i], given[i], 1e-3) << i;
}

// Draws of consecutive steps are independent: a coordinate kept at step t is kept at t + 1 with
// probability k / n, so a coordinate waits n / k steps on average (the delay error feedback adds).
TEST(Randk, ConsecutiveDrawsAreIndependent) {
  const std::uint64_t n = 10000, k = 100;
  std::vector<std::uint64_t> prev, idx;
  randk_indices(3, 0, n, k, prev);
  double overlap = 0;
  const int steps = 2000;
  for (int step = 1; step <= steps; ++step) {
    randk_indices(3, static_cast<std::uint64_t>(step), n, k, idx);
    std::vector<std::uint64_t> both;
    std::set_intersection(prev.begin(), prev.end(), idx.begin(), idx.end(),
                          std::back_inserter(both));
    overlap += static_cast<double>(both.size());
    prev = idx;
  }
  const double mean = overlap / steps;  // expected k² / n = 1, variance ≈ 1
  EXPECT_NEAR(mean, 1.0, 5.0 / std::sqrt(steps));
}

}  // namespace
}  // namespace psgd
