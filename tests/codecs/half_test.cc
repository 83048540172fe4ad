// fp16 and bf16: exact for representable values, round-to-nearest-even otherwise, inf/NaN kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "codecs/bf16.h"
#include "codecs/fp16.h"
#include "core/error.h"

namespace psgd {
namespace {

std::vector<float> round_trip(Codec& codec, const std::vector<float>& g) {
  Payload p = codec.encode(g);
  EXPECT_EQ(p.num_elements, g.size());
  EXPECT_EQ(p.bytes.size(), 2 * g.size());
  std::vector<float> out(g.size(), 42.0f);
  codec.decode(p, out);
  std::vector<float> acc(g.size(), 1.0f);
  codec.decode_add(p, acc, 2.0f);
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isfinite(out[i])) {
      EXPECT_FLOAT_EQ(acc[i], 1.0f + 2.0f * out[i]) << i;
    }
  }
  return out;
}

TEST(Fp16, EveryHalfValueRoundTripsExactly) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_bits_to_float(static_cast<std::uint16_t>(h));
    const std::uint16_t back = float_to_half_bits(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_bits_to_float(back))) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(Fp16, ConversionsMatchTheCompilersFloat16) {
#ifdef __FLT16_MAX__
  std::mt19937 rng(3);
  std::vector<std::uint32_t> bits;
  for (int i = 0; i < 200000; ++i)
    bits.push_back(rng());
  // Values around the edges: subnormal range, rounding ties, overflow to inf.
  for (std::uint32_t e = 100; e < 145; ++e) {
    for (std::uint32_t m : {0u, 0x1000u, 0x2000u, 0x3000u, 0x7fffffu, 0x7fe000u, 0x7ff000u})
      bits.push_back((e << 23) | m);
  }
  for (std::uint32_t b : bits) {
    const float f = std::bit_cast<float>(b);
    const auto ref = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
    const std::uint16_t ours = float_to_half_bits(f);
    if (std::isnan(f)) {
      EXPECT_EQ(ours & 0x7e00, 0x7e00) << std::hex << b;
    } else {
      ASSERT_EQ(ours, ref) << std::hex << b << " " << f;
      EXPECT_EQ(half_bits_to_float(ours), static_cast<float>(static_cast<_Float16>(f)));
    }
  }
#else
  GTEST_SKIP() << "no _Float16 in this compiler";
#endif
}

TEST(Fp16, RoundTripWithinPrecisionAndSpecialsPreserved) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> g{0.0f,
                       -0.0f,
                       1.0f,
                       -2.5f,
                       65504.0f,
                       1e6f,
                       -1e6f,
                       inf,
                       -inf,
                       1e-8f,
                       6.1035156e-5f,
                       5.96e-8f,
                       1e-30f,
                       0.1f,
                       0.3333f,
                       1.0e-3f,
                       std::numeric_limits<float>::quiet_NaN()};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int i = 0; i < 1000; ++i)
    g.push_back(normal(rng));
  Fp16Codec codec;
  auto out = round_trip(codec, g);
  for (std::size_t i = 0; i < g.size(); ++i) {
    const float x = g[i];
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(out[i]));
    } else if (std::fabs(x) > 65520.0f) {
      EXPECT_EQ(out[i], std::copysign(inf, x)) << x;
    } else if (std::fabs(x) >= 6.1035156e-5f) {
      EXPECT_LE(std::fabs(out[i] - x), std::fabs(x) * 0x1p-11f) << x;  // half an ulp, normal
    } else {
      EXPECT_LE(std::fabs(out[i] - x), 0x1p-25f) << x;  // half a subnormal step
    }
  }
  EXPECT_EQ(std::signbit(out[1]), true);  // -0 stays -0
}

TEST(Bf16, RoundTripWithinPrecisionExactForRepresentableAndSpecials) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> g{0.0f,
                       -0.0f,
                       1.0f,
                       -2.5f,
                       1e38f,
                       3e38f,
                       inf,
                       -inf,
                       1e-40f,
                       0.1f,
                       std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::max()};
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int i = 0; i < 1000; ++i)
    g.push_back(normal(rng));
  Bf16Codec codec;
  auto out = round_trip(codec, g);
  for (std::size_t i = 0; i < g.size(); ++i) {
    const float x = g[i];
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(out[i]));
    } else if (std::isinf(x)) {
      EXPECT_EQ(out[i], x);
    } else if (x == std::numeric_limits<float>::max()) {
      EXPECT_EQ(out[i], inf);  // rounds up past the largest bf16
    } else {
      EXPECT_LE(std::fabs(out[i] - x), std::max(std::fabs(x) * 0x1p-8f, 0x1p-134f)) << x;
    }
  }
  // Representable values are exact; ties go to even.
  EXPECT_EQ(bf16_bits_to_float(float_to_bf16_bits(1.5f)), 1.5f);
  EXPECT_EQ(float_to_bf16_bits(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bf16_bits(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even
  EXPECT_EQ(float_to_bf16_bits(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_bits_to_float(static_cast<std::uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(float_to_bf16_bits(f), h);
    }
  }
}

TEST(Half, OddLengthsAndEmpty) {
  for (std::size_t n : {0, 1, 7, 4097, 10000}) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i)
      g[i] = static_cast<float>(i % 100) * 0.25f;
    Fp16Codec f;
    Bf16Codec b;
    EXPECT_EQ(round_trip(f, g), g);
    EXPECT_EQ(round_trip(b, g), g);
  }
}

}  // namespace
}  // namespace psgd
