// qsgd: unbiased, within the variance bound of Alistarh et al. 2017 Lemma 3.1, packed tight.
#include "codecs/qsgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"

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

double norm2(const std::vector<float>& v) {
  double s = 0;
  for (float x : v)
    s += static_cast<double>(x) * x;
  return s;
}

TEST(Qsgd, PayloadIsPackedToTheBitsItNeeds) {
  for (int s : {1, 2, 7, 8, 255, 256, 32767}) {
    const std::size_t n = 1001;
    QsgdCodec codec({.levels = s});
    Payload p = codec.encode(gaussian(n, 1));
    const std::size_t b = static_cast<std::size_t>(std::ceil(std::log2(s + 1.0))) + 1;
    EXPECT_EQ(p.bytes.size(), 4 + 8 + 4 + (n * b + 7) / 8) << s;
  }
  QsgdCodec bucketed({.levels = 8, .bucket = 100});
  EXPECT_EQ(bucketed.encode(gaussian(1001, 1)).bytes.size(), 4 + 8 + 4 * 11 + (1001 * 5 + 7) / 8);
}

TEST(Qsgd, DecodedValuesAreOnTheLevelGrid) {
  auto g = gaussian(5000, 2);
  QsgdCodec codec({.levels = 4, .seed = 3});
  std::vector<float> out(g.size());
  codec.decode(codec.encode(g), out);
  const float norm = static_cast<float>(std::sqrt(norm2(g)));
  for (std::size_t i = 0; i < g.size(); ++i) {
    const float level = std::fabs(out[i]) / norm * 4;
    EXPECT_NEAR(level, std::round(level), 1e-3) << i;
    EXPECT_LE(std::round(level), 4);
    if (out[i] != 0) {
      EXPECT_EQ(std::signbit(out[i]), std::signbit(g[i]));
    }
    // Only the two neighbouring levels are possible.
    EXPECT_LE(std::fabs(std::fabs(out[i]) - std::fabs(g[i])), norm / 4 * 1.0001f) << i;
  }
}

class QsgdStatistics : public ::testing::TestWithParam<std::tuple<int, std::uint64_t>> {};

TEST_P(QsgdStatistics, UnbiasedAndWithinTheVarianceBound) {
  const auto [s, bucket] = GetParam();
  const std::size_t n = 512;
  auto g = gaussian(n, 4);
  g[7] = 0;
  const int trials = 4000;
  std::vector<double> mean(n, 0.0);
  double sq_err = 0;
  QsgdCodec codec({.levels = s, .bucket = bucket, .seed = 99});  // fixed seed
  std::vector<float> out(n);
  for (int t = 0; t < trials; ++t) {
    codec.decode(codec.encode(g), out);
    for (std::size_t i = 0; i < n; ++i) {
      mean[i] += out[i] / static_cast<double>(trials);
      sq_err += (out[i] - static_cast<double>(g[i])) * (out[i] - g[i]) / trials;
    }
  }
  // Unbiased: the mean of the decodes converges to g. The per-coordinate standard deviation is at
  // most norm/s, so 4000 trials put the mean within ~5 sigma = 5 * norm / (s * sqrt(4000)).
  const double d = bucket ? static_cast<double>(bucket) : static_cast<double>(n);
  const double gn = std::sqrt(norm2(g));
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(mean[i], g[i], 5.0 * gn / (s * std::sqrt(trials))) << i;
  }
  EXPECT_EQ(mean[7], 0.0);
  // Lemma 3.1: E‖Q(v) − v‖² ≤ min(d/s², √d/s) ‖v‖² (per bucket, so overall too).
  const double bound = std::min(d / (s * s), std::sqrt(d) / s) * norm2(g);
  EXPECT_LE(sq_err, bound);
  EXPECT_GT(sq_err, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Levels, QsgdStatistics,
                         ::testing::Values(std::tuple{1, 0}, std::tuple{4, 0}, std::tuple{8, 0},
                                           std::tuple{8, 64}, std::tuple{300, 100}));

TEST(Qsgd, SameSeedSameBitsDifferentSeedDifferentBits) {
  auto g = gaussian(1000, 5);
  QsgdCodec a({.seed = 1}), b({.seed = 1}), c({.seed = 2});
  const Payload pa = a.encode(g);
  EXPECT_EQ(pa.bytes, b.encode(g).bytes);
  EXPECT_NE(pa.bytes, c.encode(g).bytes);
  EXPECT_NE(pa.bytes, a.encode(g).bytes);  // a fresh draw per encode
}

TEST(Qsgd, ZeroAndTinyVectors) {
  QsgdCodec codec({.levels = 8, .bucket = 3});
  for (std::size_t n : {0, 1, 2, 3, 9, 17}) {
    std::vector<float> zero(n, 0.0f), out(n, 5.0f);
    codec.decode(codec.encode(zero), out);
    for (float v : out)
      EXPECT_EQ(v, 0.0f);
  }
  std::vector<float> one{-3.0f}, out(1);
  codec.decode(codec.encode(one), out);
  EXPECT_EQ(out[0], -3.0f);  // |v|/‖v‖ = 1 is exactly level s
}

TEST(Qsgd, RefusesBadLevels) {
  EXPECT_THROW(QsgdCodec({.levels = 0}), ConfigError);
  EXPECT_THROW(QsgdCodec({.levels = 40000}), ConfigError);
}

}  // namespace
}  // namespace psgd

namespace psgd {
namespace {

// The uniforms come from 8 lane-parallel streams, 16 elements per step: every element position
// within a step must round up with probability frac(r), and neighbouring elements independently.
TEST(Qsgd, RoundingIsUnbiasedAtEveryLanePositionAndNeighboursAreUncorrelated) {
  const std::size_t n = 16 * 8192;
  // One bucket of equal magnitudes: r = |v_i| / ‖v‖ · s = s / √n for every element, so each
  // element decodes to a non-zero level with probability r (and to zero otherwise).
  const int s = 8;
  const double r = s / std::sqrt(static_cast<double>(n));  // ≈ 0.0221, frac = r
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = (i % 3 == 0) ? -1.0f : 1.0f;
  QsgdCodec codec({.levels = s, .bucket = 0, .seed = 11});
  std::vector<float> out(n);
  const int trials = 20;
  std::vector<double> up(16, 0.0);
  double both = 0, single = 0;
  for (int t = 0; t < trials; ++t) {
    codec.decode(codec.encode(g), out);
    for (std::size_t i = 0; i < n; ++i) {
      const bool u = out[i] != 0.0f;
      up[i % 16] += u;
      single += u;
      if (i + 1 < n) both += u && out[i + 1] != 0.0f;
    }
  }
  const double per_lane = static_cast<double>(n / 16) * trials;
  for (int lane = 0; lane < 16; ++lane) {
    const double p = up[lane] / per_lane;
    EXPECT_NEAR(p, r, 5 * std::sqrt(r * (1 - r) / per_lane)) << "lane " << lane;
  }
  // Independent neighbours: P(both up) ≈ r².
  const double pairs = static_cast<double>(n - 1) * trials;
  EXPECT_NEAR(both / pairs, r * r, 5 * std::sqrt(r * r / pairs) + 1e-6);
  EXPECT_NEAR(single / (static_cast<double>(n) * trials), r, 5 * std::sqrt(r / (n * trials)));
}

}  // namespace
}  // namespace psgd
