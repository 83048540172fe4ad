#pragma once
// qsgd: stochastic quantisation of QSGD (Alistarh et al. 2017, "QSGD: Communication-Efficient SGD
// via Gradient Quantization and Encoding", §3.1), without the Elias coding of §3.2.
//
// With s levels and a bucket v of d elements, Q_s(v_i) = ‖v‖₂ · sign(v_i) · ξ_i(v, s) where
// ξ_i = (l + 1)/s with probability |v_i|/‖v‖₂ · s − l and l/s otherwise, l = ⌊|v_i|/‖v‖₂ · s⌋.
// Q_s is unbiased, E[Q_s(v)] = v, with E‖Q_s(v) − v‖² ≤ min(d/s², √d/s) ‖v‖² (Lemma 3.1).
//
// Options: levels s (1..32767, --codec_levels, default 8: 5 bits per element on the wire) and
// bucket d (--codec_bucket, default 512 as in the paper's experiments; 0 = one norm for the
// whole vector). Randomness: every encode draws a 64-bit key from a psgd::Rng seeded with the
// codec seed, which seeds 8 xorshift128+ streams (one step of all 8 gives the uniforms of 16
// consecutive elements), so the encoder is deterministic for a seed and its hot loop runs on AVX2
// lanes. The stochastic rounding is done in fixed point with F ≥ 24 fraction bits
// (l = ⌊(⌊r·2^F⌋ + U) / 2^F⌋ for r = |v_i|/‖v‖₂ · s and U the top F bits of a random word), so it
// is unbiased up to 2^−F of a level. With AVX2 and up to 127 levels the encoder packs 16 codes per
// step with multiply-adds (codecs/qsgd.cc); the result is bit-identical to the portable loop.
//
// Wire format (Payload.bytes), little-endian:
//   uint32  s                    number of levels
//   uint64  d                    bucket size (0: the whole vector is one bucket)
//   float32 norm[B]              ‖bucket‖₂, B = ceil(num_elements / d) (d = 0: B = 1, or 0 when
//                                there are no elements)
//   packed codes                 ceil(num_elements · b / 8) bytes, b = ceil(log2(s + 1)) + 1:
//                                an LSB-first bit stream, element i in bits [i·b, (i+1)·b); the
//                                low b−1 bits are the level l ∈ [0, s], the top bit the sign
//                                (1 = negative). Decoded value: ±norm · l / s.
#include <cstdint>

#include "codecs/codec.h"
#include "core/rng.h"

namespace psgd {

struct QsgdOptions {
  int levels = 8;
  std::uint64_t bucket = 0;  // elements per norm; 0: one norm for the whole vector (jobs: 512)
  std::uint64_t seed = 1;
};

class QsgdCodec final : public Codec {
 public:
  static constexpr int kMaxLevels = 32767;  // level + sign fit 16 bits

  explicit QsgdCodec(QsgdOptions options);
  std::string_view name() const override { return "qsgd"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
  // The number of encodes: each draws one key from the seeded stream.
  std::vector<std::uint8_t> state() const override;
  void restore_state(std::span<const std::uint8_t> state) override;

 private:
  template <bool kAdd>
  void decode_impl(const Payload& payload, std::span<float> acc, float weight) const;

  QsgdOptions options_;
  Rng rng_;
  std::uint64_t encodes_ = 0;
};

}  // namespace psgd
