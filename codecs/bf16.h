#pragma once
// bf16: bfloat16 casts of every element (the "brain floating point" of Kalamkar et al. 2019,
// "A Study of BFLOAT16 for Deep Learning Training"): the top 16 bits of fp32, so the full fp32
// exponent range with an 8-bit significand. Round-to-nearest-even on the dropped 16 bits; inf
// stays inf, NaN stays a quiet NaN, subnormals round like any other value.
//
// Wire format (Payload.bytes): num_elements little-endian uint16 bfloat16 values, nothing else.
#include <bit>
#include <cstdint>

#include "codecs/codec.h"

namespace psgd {

inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  const bool nan = (x & 0x7fffffffu) > 0x7f800000u;
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(nan);  // branch-free for the vectoriser
  return static_cast<std::uint16_t>((((x >> 16) | 0x40u) & m) | (rounded & ~m));
}

inline float bf16_bits_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

class Bf16Codec final : public Codec {
 public:
  std::string_view name() const override { return "bf16"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
};

}  // namespace psgd
