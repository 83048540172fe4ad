#pragma once
// sign: scaled sign compression of EF-SGD (Karimireddy et al. 2019, "Error Feedback Fixes SignSGD
// and other Gradient Compression Schemes", Algorithm 1 with C(p) = (‖p‖₁ / d) · sign(p)).
// One bit per element plus one fp32 scale per bucket of d elements (--codec_bucket, default 512),
// the bucket's mean absolute value, so that D(C(p)) has p's ℓ1 norm bucket by bucket. One scale for
// the whole flat vector (d = 0) mixes layers whose gradients differ by orders of magnitude and
// makes the compression nearly useless (δ = ‖p‖₁² / (d‖p‖₂²) tiny); the paper scales per tensor,
// which the flat vector cannot see, so buckets stand in for tensors. Used with error feedback
// (--error_feedback auto turns it on); without it, this is scaled signSGD (Bernstein et al. 2018),
// which is biased.
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
  explicit SignCodec(std::uint64_t bucket = 512) : bucket_(bucket) {}
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
