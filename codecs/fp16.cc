#include "codecs/fp16.h"

#include "codecs/half_loops.h"

namespace psgd {

Payload Fp16Codec::encode(std::span<const float> values) {
  return half_detail::encode<float_to_half_bits>(values);
}

void Fp16Codec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  half_detail::decode_add<half_bits_to_float>(payload, acc, weight, "fp16");
}

void Fp16Codec::decode(const Payload& payload, std::span<float> out) const {
  half_detail::decode<half_bits_to_float>(payload, out, "fp16");
}

}  // namespace psgd
