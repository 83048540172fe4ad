#include "codecs/bf16.h"

#include "codecs/half_loops.h"

namespace psgd {

Payload Bf16Codec::encode(std::span<const float> values) {
  return half_detail::encode<float_to_bf16_bits>(values);
}

void Bf16Codec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  half_detail::decode_add<bf16_bits_to_float>(payload, acc, weight, "bf16");
}

void Bf16Codec::decode(const Payload& payload, std::span<float> out) const {
  half_detail::decode<bf16_bits_to_float>(payload, out, "bf16");
}

}  // namespace psgd
