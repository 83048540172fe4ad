// Encoding into a reused Payload (Codec::encode_into) and the AVX2 / F16C kernels of codecs/simd.h:
// a reused payload gives the same bytes as a fresh one and keeps its buffer, and the AVX2 versions
// give bit-identical results to the portable ones.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "codecs/codec_table.h"
#include "codecs/factory.h"
#include "codecs/fp16.h"
#include "codecs/qsgd.h"
#include "codecs/sign.h"
#include "codecs/simd.h"

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

std::vector<std::uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<std::uint32_t> b(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    b[i] = std::bit_cast<std::uint32_t>(v[i]);
  return b;
}

TEST(EncodeInto, ReusedPayloadGivesTheFreshBytesAndKeepsItsBuffer) {
  for (const std::string& name : codec_names()) {  // every codec of the table
    for (const char* ef : {"off", "on"}) {
      SCOPED_TRACE(name + " error_feedback " + ef);
      const CodecSpec spec{.name = name, .bucket = 100, .error_feedback = ef, .seed = 7};
      auto fresh = make_codec(spec);
      auto reused = make_codec(spec);
      // Stale contents of another shape must not leak into the encoding.
      Payload p{.num_elements = 3, .bytes = std::vector<std::uint8_t>(100000, 0xAB)};
      const std::uint8_t* buffer = nullptr;
      for (int step = 0; step < 4; ++step) {
        const auto g = gaussian(step == 0 ? 777 : 5000, 10 + step);
        reused->encode_into(g, p);
        const Payload expected = fresh->encode(g);
        EXPECT_EQ(p.num_elements, expected.num_elements);
        EXPECT_EQ(p.bytes, expected.bytes) << step;
        if (step >= 2) {
          EXPECT_EQ(p.bytes.data(), buffer) << "the buffer was reallocated";
        }
        buffer = p.bytes.data();
      }
    }
  }
}

TEST(Simd, HalfToFloatMatchesPortableForEveryHalf) {
  if (simd::best() == simd::Isa::kPortable) GTEST_SKIP() << "this CPU has no AVX2 + F16C";
  std::vector<std::uint8_t> halves(2 * 0x10000);
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto v = static_cast<std::uint16_t>(h);
    std::memcpy(halves.data() + 2 * h, &v, 2);
  }
  std::vector<float> fast(0x10000), portable(0x10000), fast_acc(0x10000, 1.5f),
      portable_acc(0x10000, 1.5f);
  simd::from_half(halves.data(), 0x10000, fast.data());
  simd::from_half_add(halves.data(), 0x10000, fast_acc.data(), -0.75f);
  {
    simd::ForceIsa force(simd::Isa::kPortable);
    ASSERT_EQ(simd::active(), simd::Isa::kPortable);
    simd::from_half(halves.data(), 0x10000, portable.data());
    simd::from_half_add(halves.data(), 0x10000, portable_acc.data(), -0.75f);
  }
  for (std::size_t i = 0; i < 0x10000; ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[i]), std::bit_cast<std::uint32_t>(portable[i]))
        << std::hex << i;
    ASSERT_EQ(std::bit_cast<std::uint32_t>(fast_acc[i]),
              std::bit_cast<std::uint32_t>(portable_acc[i]))
        << std::hex << i;
  }
}

TEST(Simd, FloatToHalfMatchesPortable) {
  if (simd::best() == simd::Isa::kPortable) GTEST_SKIP() << "this CPU has no AVX2 + F16C";
  // Every 4099th float (all exponents, NaNs with payloads, subnormals), plus the edges of the
  // half range where rounding and overflow happen, at a length that is not a multiple of 8.
  std::vector<float> x;
  for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 4099)
    x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(b)));
  for (std::uint32_t e = 100; e < 145; ++e) {
    for (std::uint32_t m : {0u, 0xfffu, 0x1000u, 0x1001u, 0x2000u, 0x3000u, 0x7fffffu, 0x7fe000u})
      for (std::uint32_t sign : {0u, 0x80000000u})
        x.push_back(std::bit_cast<float>(sign | (e << 23) | m));
  }
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(std::bit_cast<float>(0x7f800001u));  // signalling NaN
  x.push_back(std::bit_cast<float>(0xffc12345u));
  std::vector<std::uint8_t> fast(2 * x.size()), portable(2 * x.size());
  simd::to_half(x.data(), x.size(), fast.data());
  {
    simd::ForceIsa force(simd::Isa::kPortable);
    simd::to_half(x.data(), x.size(), portable.data());
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint16_t a, b;
    std::memcpy(&a, fast.data() + 2 * i, 2);
    std::memcpy(&b, portable.data() + 2 * i, 2);
    ASSERT_EQ(a, b) << std::hex << std::bit_cast<std::uint32_t>(x[i]);
  }
}

std::vector<std::uint32_t> float_bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> bits(v.size());
  std::memcpy(bits.data(), v.data(), v.size() * sizeof(float));
  return bits;
}

TEST(Simd, QsgdPayloadsAndDecodesAreTheSameOnBothPaths) {
  if (simd::best() == simd::Isa::kPortable) GTEST_SKIP() << "this CPU has no AVX2";
  auto g = gaussian(10007, 3);
  g[5] = 0.0f;
  g[6] = 1e15f;  // dominates its bucket
  // Buckets of a multiple of 16 have their norms taken inside the AVX2 quantiser's loop, two
  // buckets ahead (qsgd.cc encode_run_avx2): special values in such a bucket, too.
  g[2600] = std::numeric_limits<float>::quiet_NaN();
  g[4000] = std::numeric_limits<float>::infinity();
  g[5000] = 3e19f;  // its square overflows float
  for (int levels : {1, 8, 300}) {
    for (std::uint64_t bucket : {0, 512, 100, 16, 4096}) {
      SCOPED_TRACE(testing::Message() << levels << " levels, bucket " << bucket);
      const QsgdOptions options{.levels = levels, .bucket = bucket, .seed = 5};
      QsgdCodec fast(options), portable(options);
      const Payload p = fast.encode(g);
      std::vector<float> out_fast(g.size()), acc_fast(g.size(), 1.0f);
      fast.decode(p, out_fast);
      fast.decode_add(p, acc_fast, 0.5f);
      simd::ForceIsa force(simd::Isa::kPortable);
      const Payload q = portable.encode(g);
      EXPECT_EQ(p.bytes, q.bytes);
      std::vector<float> out(g.size()), acc(g.size(), 1.0f);
      portable.decode(p, out);
      portable.decode_add(p, acc, 0.5f);
      EXPECT_EQ(float_bits(out), float_bits(out_fast));  // bit patterns: NaN != NaN
      EXPECT_EQ(float_bits(acc), float_bits(acc_fast));
    }
  }
}

TEST(Simd, SignPayloadsAndDecodesAreTheSameOnBothPaths) {
  if (simd::best() == simd::Isa::kPortable) GTEST_SKIP() << "this CPU has no AVX2";
  auto g = gaussian(1000, 4);
  g[3] = -0.0f;
  g[4] = 0.0f;
  g[5] = std::bit_cast<float>(0xffc00000u);  // negative NaN
  for (std::size_t n : {1000, 999, 31, 33, 8}) {
    const std::span<const float> x(g.data(), n);
    SignCodec fast(n == 1000 ? 0 : 100), portable(n == 1000 ? 0 : 100);
    const Payload p = fast.encode(x);
    std::vector<float> out_fast(n), acc_fast(n, 1.0f), out(n), acc(n, 1.0f);
    fast.decode(p, out_fast);
    fast.decode_add(p, acc_fast, -0.5f);
    simd::ForceIsa force(simd::Isa::kPortable);
    EXPECT_EQ(p.bytes, portable.encode(x).bytes) << n;
    portable.decode(p, out);
    portable.decode_add(p, acc, -0.5f);
    EXPECT_EQ(bits_of(out), bits_of(out_fast)) << n;  // the NaN's bucket decodes to NaNs
    EXPECT_EQ(bits_of(acc), bits_of(acc_fast)) << n;
  }
}

}  // namespace
}  // namespace psgd
