#pragma once
// The codec bodies shared by the 16-bit codecs (fp16, bf16), parameterised on bulk conversion
// loops over n elements (the 16-bit side little-endian and unaligned).
#include <cstdint>
#include <span>

#include "codecs/payload_io.h"

namespace psgd::half_detail {

using ToBits = void (*)(const float* src, std::size_t n, std::uint8_t* dst);
using FromBits = void (*)(const std::uint8_t* src, std::size_t n, float* dst);
using FromBitsAdd = void (*)(const std::uint8_t* src, std::size_t n, float* dst, float w);

inline void encode_into(std::span<const float> values, Payload& p, ToBits to_bits) {
  p.num_elements = values.size();
  // A no-op for a payload reused at the same length; a fresh one is zero-filled first, once.
  p.bytes.resize(values.size() * 2);
  to_bits(values.data(), values.size(), p.bytes.data());
}

inline void check(const Payload& payload, std::size_t n, const char* codec) {
  check_element_count(payload, n, codec);
  if (payload.size_bytes() != n * 2) {
    throw ProtocolError(fmt::format("{} payload of {} elements has {} bytes instead of {}", codec,
                                    n, payload.size_bytes(), n * 2));
  }
}

inline void decode_add(const Payload& payload, std::span<float> acc, float weight,
                       const char* codec, FromBitsAdd from_bits_add) {
  check(payload, acc.size(), codec);
  from_bits_add(payload.view().data(), acc.size(), acc.data(), weight);
}

inline void decode(const Payload& payload, std::span<float> out, const char* codec,
                   FromBits from_bits) {
  check(payload, out.size(), codec);
  from_bits(payload.view().data(), out.size(), out.data());
}

}  // namespace psgd::half_detail
