#include "codecs/bf16.h"

#include <cstring>

#include "codecs/half_loops.h"

namespace psgd {
namespace {

// Flat loops the compiler vectorises.
void to_bf16(const float* src, std::size_t n, std::uint8_t* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = float_to_bf16_bits(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void from_bf16(const std::uint8_t* src, std::size_t n, float* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_bits_to_float(h);
  }
}

void from_bf16_add(const std::uint8_t* src, std::size_t n, float* dst, float w) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] += w * bf16_bits_to_float(h);
  }
}

}  // namespace

void Bf16Codec::encode_into(std::span<const float> values, Payload& out) {
  half_detail::encode_into(values, out, to_bf16);
}

void Bf16Codec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  half_detail::decode_add(payload, acc, weight, "bf16", from_bf16_add);
}

void Bf16Codec::decode(const Payload& payload, std::span<float> out) const {
  half_detail::decode(payload, out, "bf16", from_bf16);
}

}  // namespace psgd
