#pragma once
// sign: scaled sign compression of EF-SGD (Karimireddy et al. 2019, "Error Feedback Fixes SignSGD
// and other Gradient Compression Schemes", Algorithm 1 with C(p) = (‖p‖₁ / d) · sign(p)).
// One bit per element plus one fp32 scale per bucket of d elements (--codec_bucket), the bucket's
// mean absolute value, so that D(C(p)) has p's ℓ1 norm bucket by bucket (the scale that minimises
// ‖p − D(C(p))‖ for a given sign pattern).
//
// Default d = 0: one scale for the whole gradient, which is the C of the paper's analysis. Per
// bucket scales look attractive (they follow layers of different magnitudes), but with error
// feedback they train worse here: 4 workers, MLP, Fashion-MNIST, 2 epochs, ssgd, lr 0.05, seeds
// 1/2/3: plain 83.45/83.77/83.02 %; sign + EF with d = 0 82.70/82.96/83.24 %, d = 512
// 78.15/79.09/79.60 %, d = 4096 53.6 % (seed 1). A bucket of the small top layers gets its own,
// large scale, and error feedback then drives every element of it to ±scale steps whatever its
// own gradient; one global scale keeps those layers' steps small and lets the residual carry
// their magnitude. Without error feedback this is scaled signSGD (Bernstein et al. 2018), biased:
// 80.1 % average with d = 0. Used with error feedback (--error_feedback auto turns it on).
//
// Wire format (Payload.bytes), little-endian:
//   uint64  d                            bucket size (0: the whole vector is one bucket)
//   float32 scale[B]                     mean |p_i| of each bucket, B = ceil(num_elements / d)
//   ceil(num_elements / 8) bytes         bit (i % 8) of byte (i / 8) is 1 when element i is
//                                        negative (its fp32 sign bit is set; -0 counts as negative)
//   D(C(p))_i = bit ? -scale : +scale. Padding bits of the last byte are written as 0 and refused
//   otherwise.
#include <cstdint>

#include "codecs/codec.h"

namespace psgd {

class SignCodec final : public Codec {
 public:
  explicit SignCodec(std::uint64_t bucket = 0) : bucket_(bucket) {}
  std::string_view name() const override { return "sign"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;

 private:
  template <bool kAdd>
  void decode_impl(const Payload& payload, std::span<float> acc, float weight) const;

  std::uint64_t bucket_;
};

}  // namespace psgd
