#pragma once
// sign: scaled sign compression of EF-SGD (Karimireddy et al. 2019, "Error Feedback Fixes SignSGD
// and other Gradient Compression Schemes", Algorithm 1 with C(p) = (‖p‖₁ / d) · sign(p)).
// One bit per element plus one fp32 scale, the mean absolute value, so that D(C(p)) has the same
// ℓ1 norm as p. Used with error feedback (--error_feedback auto turns it on); without it, this is
// scaled signSGD (Bernstein et al. 2018), which is biased.
//
// Wire format (Payload.bytes), little-endian:
//   float32 scale                        mean |p_i| over the num_elements elements
//   ceil(num_elements / 8) bytes         bit (i % 8) of byte (i / 8) is 1 when element i is
//                                        negative (its fp32 sign bit is set; -0 counts as negative)
//   D(C(p))_i = bit ? -scale : +scale. Padding bits of the last byte are written as 0 and refused
//   otherwise.
#include "codecs/codec.h"

namespace psgd {

class SignCodec final : public Codec {
 public:
  std::string_view name() const override { return "sign"; }
  Payload encode(std::span<const float> values) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
};

}  // namespace psgd
