#pragma once
// The element loops shared by the 16-bit codecs (fp16, bf16), parameterised on the conversion so
// each instantiation is one flat loop the compiler vectorises.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

#include "codecs/payload_io.h"

namespace psgd::half_detail {

template <std::uint16_t (*ToBits)(float)>
Payload encode(std::span<const float> values) {
  Payload p;
  p.num_elements = values.size();
  p.bytes.reserve(values.size() * 2);
  // Convert through a small stack buffer and append it: resizing the payload first would make an
  // extra zero-filling pass over memory.
  constexpr std::size_t kChunk = 4096;
  std::uint16_t buf[kChunk];
  const float* src = values.data();
  for (std::size_t i = 0; i < values.size(); i += kChunk) {
    const std::size_t m = std::min(kChunk, values.size() - i);
    for (std::size_t j = 0; j < m; ++j)
      buf[j] = ToBits(src[i + j]);
    append_bytes(p.bytes, buf, m * 2);
  }
  return p;
}

inline void check(const Payload& payload, std::size_t n, const char* codec) {
  check_element_count(payload, n, codec);
  if (payload.size_bytes() != n * 2) {
    throw ProtocolError(fmt::format("{} payload of {} elements has {} bytes instead of {}", codec,
                                    n, payload.size_bytes(), n * 2));
  }
}

template <float (*FromBits)(std::uint16_t)>
void decode_add(const Payload& payload, std::span<float> acc, float weight, const char* codec) {
  check(payload, acc.size(), codec);
  const std::uint8_t* src = payload.view().data();
  float* dst = acc.data();
  for (std::size_t i = 0; i < acc.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] += weight * FromBits(h);
  }
}

template <float (*FromBits)(std::uint16_t)>
void decode(const Payload& payload, std::span<float> out, const char* codec) {
  check(payload, out.size(), codec);
  const std::uint8_t* src = payload.view().data();
  float* dst = out.data();
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = FromBits(h);
  }
}

}  // namespace psgd::half_detail
