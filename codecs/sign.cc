#include "codecs/sign.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "codecs/payload_io.h"
#include "codecs/simd.h"

namespace psgd {
namespace {

std::uint64_t bucket_count(std::uint64_t n, std::uint64_t bucket) {
  if (n == 0) return 0;
  if (bucket == 0 || bucket >= n) return 1;
  return n / bucket + (n % bucket != 0);
}

template <bool kAdd>
inline void put(float* dst, std::size_t i, std::uint32_t scale_bits, std::uint32_t bit) {
  const float v = std::bit_cast<float>(scale_bits ^ (bit << 31));
  if constexpr (kAdd) {
    dst[i] += v;
  } else {
    dst[i] = v;
  }
}

// dst[i] (+)= ±scale for i in [lo, hi); the sign bit is flipped rather than multiplied.
template <bool kAdd>
void apply(float* dst, const std::uint8_t* bits, std::size_t lo, std::size_t hi, float scale) {
  const std::uint32_t s = std::bit_cast<std::uint32_t>(scale);
  std::size_t i = lo;
  for (; i < hi && i % 8 != 0; ++i)
    put<kAdd>(dst, i, s, (bits[i / 8] >> (i % 8)) & 1u);
  const std::size_t whole = i < hi ? (hi - i) / 8 : 0;
  if constexpr (kAdd) {
    simd::sign_expand_add(bits + i / 8, whole, scale, dst + i);
  } else {
    simd::sign_expand(bits + i / 8, whole, scale, dst + i);
  }
  i += 8 * whole;
  for (; i < hi; ++i)
    put<kAdd>(dst, i, s, (bits[i / 8] >> (i % 8)) & 1u);
}

}  // namespace

void SignCodec::encode_into(std::span<const float> values, Payload& p) {
  const std::size_t n = values.size();
  const std::uint64_t buckets = bucket_count(n, bucket_);
  const std::uint64_t d = (bucket_ == 0 || bucket_ >= n) ? n : bucket_;
  p.num_elements = n;
  p.bytes.resize(8 + 4 * buckets + (n + 7) / 8);  // no-op for a payload reused at this length
  std::uint8_t* out = p.bytes.data();
  std::memcpy(out, &bucket_, 8);
  for (std::uint64_t k = 0; k < buckets; ++k) {
    const std::size_t lo = k * d, len = std::min<std::uint64_t>(d, n - lo);
    const auto scale =
        static_cast<float>(simd::sum_abs(values.data() + lo, len) / static_cast<double>(len));
    std::memcpy(out + 8 + 4 * k, &scale, 4);
  }
  std::uint8_t* bits = out + 8 + 4 * buckets;
  const std::size_t whole = n / 8;
  const float* src = values.data();
  simd::sign_bits(src, whole, bits);
  if (n % 8 != 0) {
    float tail[8] = {};
    std::copy(src + whole * 8, src + n, tail);
    simd::sign_bits(tail, 1, bits + whole);
  }
}

template <bool kAdd>
void SignCodec::decode_impl(const Payload& payload, std::span<float> acc, float weight) const {
  const std::uint64_t n = acc.size();
  check_element_count(payload, n, "sign");
  PayloadReader in(payload.view(), "sign");
  const auto bucket = in.read<std::uint64_t>();
  const std::uint64_t buckets = bucket_count(n, bucket);
  const std::uint64_t d = (bucket == 0 || bucket >= n) ? n : bucket;
  const std::uint64_t nbytes = (n + 7) / 8;
  if (in.remaining() != 4 * buckets + nbytes) {
    in.fail(fmt::format("{} elements in buckets of {} need {} bytes after the header, {} present",
                        n, d, 4 * buckets + nbytes, in.remaining()));
  }
  const auto scales = in.take(4 * buckets);
  const auto bits = in.take(nbytes);
  if (n % 8 != 0 && (bits.back() >> (n % 8)) != 0) in.fail("padding bits are set");
  for (std::uint64_t k = 0; k < buckets; ++k) {
    float scale;
    std::memcpy(&scale, scales.data() + 4 * k, 4);
    apply<kAdd>(acc.data(), bits.data(), k * d, std::min<std::uint64_t>(n, (k + 1) * d),
                weight * scale);
  }
}

void SignCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  decode_impl<true>(payload, acc, weight);
}

void SignCodec::decode(const Payload& payload, std::span<float> out) const {
  decode_impl<false>(payload, out, 1.0f);
}

}  // namespace psgd
