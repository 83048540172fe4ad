#include "codecs/sign.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "codecs/kernels.h"
#include "codecs/payload_io.h"

namespace psgd {
namespace {

std::uint8_t sign_bits8(const float* p) {
  std::uint32_t byte = 0;
  for (int j = 0; j < 8; ++j)
    byte |= (std::bit_cast<std::uint32_t>(p[j]) >> 31) << j;
  return static_cast<std::uint8_t>(byte);
}

// Validates and returns the scale and the bit bytes.
std::pair<float, std::span<const std::uint8_t>> parse(const Payload& payload, std::size_t n) {
  check_element_count(payload, n, "sign");
  PayloadReader in(payload.bytes, "sign");
  const float scale = in.read<float>();
  const std::size_t nbytes = (n + 7) / 8;
  if (in.remaining() != nbytes) {
    in.fail(fmt::format("{} elements need {} sign bytes, {} present", n, nbytes, in.remaining()));
  }
  auto bits = in.take(nbytes);
  if (n % 8 != 0 && (bits.back() >> (n % 8)) != 0) in.fail("padding bits are set");
  return {scale, bits};
}

// acc[i] (+)= ±scale for 8 elements of one byte; the sign bit is flipped rather than multiplied.
template <bool kAdd>
void apply(float* dst, std::span<const std::uint8_t> bits, std::size_t n, float scale) {
  const std::uint32_t s = std::bit_cast<std::uint32_t>(scale);
  const std::size_t whole = n / 8;
  for (std::size_t b = 0; b < whole; ++b) {
    const std::uint32_t byte = bits[b];
    for (std::size_t j = 0; j < 8; ++j) {
      const float v = std::bit_cast<float>(s ^ (((byte >> j) & 1u) << 31));
      if constexpr (kAdd) {
        dst[8 * b + j] += v;
      } else {
        dst[8 * b + j] = v;
      }
    }
  }
  for (std::size_t i = whole * 8; i < n; ++i) {
    const float v = std::bit_cast<float>(s ^ (((bits[i / 8] >> (i % 8)) & 1u) << 31));
    if constexpr (kAdd) {
      dst[i] += v;
    } else {
      dst[i] = v;
    }
  }
}

}  // namespace

Payload SignCodec::encode(std::span<const float> values) {
  const std::size_t n = values.size();
  Payload p;
  p.num_elements = n;
  p.bytes.reserve(4 + (n + 7) / 8);
  const float scale = n ? static_cast<float>(kernels::sum_abs(values) / static_cast<double>(n)) : 0;
  append_value(p.bytes, scale);
  constexpr std::size_t kChunk = 4096;  // bytes, i.e. 8 * kChunk elements
  std::uint8_t buf[kChunk];
  const std::size_t whole = n / 8;
  const float* src = values.data();
  for (std::size_t b = 0; b < whole; b += kChunk) {
    const std::size_t m = std::min(kChunk, whole - b);
    for (std::size_t j = 0; j < m; ++j)
      buf[j] = sign_bits8(src + 8 * (b + j));
    append_bytes(p.bytes, buf, m);
  }
  if (n % 8 != 0) {
    float tail[8] = {};
    std::copy(src + whole * 8, src + n, tail);
    p.bytes.push_back(sign_bits8(tail));
  }
  return p;
}

void SignCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  auto [scale, bits] = parse(payload, acc.size());
  apply<true>(acc.data(), bits, acc.size(), weight * scale);
}

void SignCodec::decode(const Payload& payload, std::span<float> out) const {
  auto [scale, bits] = parse(payload, out.size());
  apply<false>(out.data(), bits, out.size(), scale);
}

}  // namespace psgd
