// sign (scaled sign) and the error-feedback decorator.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "codecs/error_feedback.h"
#include "codecs/qsgd.h"
#include "codecs/sign.h"
#include "codecs/topk.h"

namespace psgd {
namespace {

std::vector<float> gaussian(std::size_t n, std::uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> g(n);
  for (auto& v : g)
    v = normal(rng);
  return g;
}

TEST(Sign, OneBitPerElementPlusScaleEqualToMeanAbs) {
  std::vector<float> g{1.0f, -2.0f, 3.0f, -0.0f, 0.0f, -6.0f, 7.0f, 8.0f, -1.0f, 2.0f, 0.5f};
  SignCodec codec;
  Payload p = codec.encode(g);
  EXPECT_EQ(p.bytes.size(), 8u + 4u + 2u);  // bucket size, one scale, 11 bits
  std::vector<float> out(g.size());
  codec.decode(p, out);
  double mean_abs = 0;
  for (float v : g)
    mean_abs += std::fabs(v) / g.size();
  for (std::size_t i = 0; i < g.size(); ++i) {
    EXPECT_FLOAT_EQ(std::fabs(out[i]), static_cast<float>(mean_abs));
    EXPECT_EQ(std::signbit(out[i]), std::signbit(g[i])) << i;
  }
  std::vector<float> acc(g.size(), 1.0f);
  codec.decode_add(p, acc, -0.5f);
  for (std::size_t i = 0; i < g.size(); ++i)
    EXPECT_FLOAT_EQ(acc[i], 1.0f - 0.5f * out[i]);
}

TEST(Sign, LengthsAroundByteBoundaries) {
  SignCodec codec(0);
  for (std::size_t n : {0, 1, 7, 8, 9, 32768, 32769}) {
    auto g = gaussian(n, static_cast<std::uint32_t>(n));
    std::vector<float> out(n);
    Payload p = codec.encode(g);
    EXPECT_EQ(p.bytes.size(), 8 + (n ? 4 : 0) + (n + 7) / 8);
    codec.decode(p, out);
    for (std::size_t i = 0; i < n; ++i)
      EXPECT_EQ(std::signbit(out[i]), std::signbit(g[i]));
  }
}

TEST(Sign, EachBucketHasItsOwnScale) {
  std::vector<float> g(30);
  for (std::size_t i = 0; i < g.size(); ++i)
    g[i] = (i < 10 ? 1.0f : i < 20 ? 100.0f : 0.01f) * (i % 2 ? -1.0f : 1.0f);
  SignCodec codec(10);
  Payload p = codec.encode(g);
  EXPECT_EQ(p.bytes.size(), 8u + 3 * 4u + 4u);
  std::vector<float> out(g.size());
  codec.decode(p, out);
  EXPECT_EQ(out, g);  // |g| is constant within each bucket
  SignCodec odd(7);   // buckets that do not end on byte boundaries
  odd.decode(odd.encode(g), out);
  for (std::size_t i = 0; i < g.size(); ++i)
    EXPECT_EQ(std::signbit(out[i]), std::signbit(g[i]));
}

TEST(Sign, EveryBucketKeepsItsL1NormWithOneMagnitude) {
  // Layers of very different scales back to back, as in the trainer's flat gradient.
  std::vector<float> g;
  for (float sigma : {1e-4f, 1.0f, 1e-2f}) {
    auto part = gaussian(1500, static_cast<std::uint32_t>(sigma * 1e4f), sigma);
    g.insert(g.end(), part.begin(), part.end());
  }
  for (std::uint64_t bucket : {512, 64, 1000, 7}) {
    SignCodec codec(bucket);
    std::vector<float> out(g.size());
    codec.decode(codec.encode(g), out);
    for (std::size_t lo = 0; lo < g.size(); lo += bucket) {
      const std::size_t hi = std::min<std::size_t>(g.size(), lo + bucket);
      double l1 = 0, decoded_l1 = 0;
      for (std::size_t i = lo; i < hi; ++i) {
        l1 += std::fabs(g[i]);
        decoded_l1 += std::fabs(out[i]);
        EXPECT_EQ(std::fabs(out[i]), std::fabs(out[lo])) << bucket << " " << i;
        EXPECT_EQ(std::signbit(out[i]), std::signbit(g[i]));
      }
      EXPECT_NEAR(decoded_l1, l1, 1e-5 * l1) << bucket << " " << lo;
    }
  }
}

// EF invariant: g + e_old = D(C(g + e_old)) + e_new, step after step.
void expect_conservation(std::unique_ptr<Codec> inner, std::size_t n) {
  ErrorFeedbackCodec ef(std::move(inner));
  std::vector<float> e_old(n, 0.0f), decoded(n);
  for (int step = 0; step < 20; ++step) {
    auto g = gaussian(n, 100 + step, 0.1f);
    Payload p = ef.encode(g);
    ef.decode(p, decoded);
    auto e_new = ef.residual();
    ASSERT_EQ(e_new.size(), n);
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const float lhs = g[i] + e_old[i];
      // e_new = p - decoded is one float subtraction: exact up to an ulp of the larger operand.
      const float scale = std::max({std::fabs(lhs), std::fabs(decoded[i]), std::fabs(e_new[i])});
      EXPECT_NEAR(lhs, decoded[i] + e_new[i], 4 * scale * 0x1p-24f) << step << " " << i;
      err += static_cast<double>(e_new[i]) * e_new[i];
      norm += static_cast<double>(lhs) * lhs;
    }
    EXPECT_NEAR(ef.last_stats().compression_error, std::sqrt(err / norm), 1e-6);
    e_old.assign(e_new.begin(), e_new.end());
  }
}

TEST(ErrorFeedback, SignConservesGradientPlusResidual) {
  expect_conservation(std::make_unique<SignCodec>(), 1000);
}
TEST(ErrorFeedback, TopkConservesGradientPlusResidual) {
  expect_conservation(std::make_unique<TopkCodec>(0.05), 1000);
}
TEST(ErrorFeedback, QsgdConservesGradientPlusResidual) {
  expect_conservation(std::make_unique<QsgdCodec>(QsgdOptions{.levels = 2}), 1000);
}

TEST(ErrorFeedback, NothingIsLostOverTime) {
  // With EF, the sum of everything decoded tracks the sum of all gradients: the difference is the
  // current residual, which stays bounded, while without EF the error grows with the steps.
  const std::size_t n = 200;
  ErrorFeedbackCodec ef(std::make_unique<TopkCodec>(0.02));
  TopkCodec plain_topk(0.02);
  std::vector<double> sum_g(n, 0), sum_ef(n, 0), sum_no(n, 0);
  std::vector<float> out(n);
  for (int step = 0; step < 500; ++step) {
    auto g = gaussian(n, 7 + step);
    for (std::size_t i = 0; i < n; ++i)
      g[i] += 0.05f;  // a small consistent signal that topk alone would never send
    for (std::size_t i = 0; i < n; ++i)
      sum_g[i] += g[i];
    ef.decode(ef.encode(g), out);
    for (std::size_t i = 0; i < n; ++i)
      sum_ef[i] += out[i];
    plain_topk.decode(plain_topk.encode(g), out);
    for (std::size_t i = 0; i < n; ++i)
      sum_no[i] += out[i];
  }
  double d_ef = 0, d_no = 0;
  for (std::size_t i = 0; i < n; ++i) {
    d_ef += (sum_g[i] - sum_ef[i]) * (sum_g[i] - sum_ef[i]);
    d_no += (sum_g[i] - sum_no[i]) * (sum_g[i] - sum_no[i]);
  }
  EXPECT_LT(d_ef * 4, d_no);
}

}  // namespace
}  // namespace psgd
