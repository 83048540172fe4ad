#include "codecs/fp16.h"

#include "codecs/half_loops.h"
#include "codecs/simd.h"

namespace psgd {

void Fp16Codec::encode_into(std::span<const float> values, Payload& out) {
  half_detail::encode_into(values, out, simd::to_half);
}

void Fp16Codec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  half_detail::decode_add(payload, acc, weight, "fp16", simd::from_half_add);
}

void Fp16Codec::decode(const Payload& payload, std::span<float> out) const {
  half_detail::decode(payload, out, "fp16", simd::from_half);
}

}  // namespace psgd
