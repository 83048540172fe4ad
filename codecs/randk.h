#pragma once
// randk: random-k sparsification (Stich et al. 2018, "Sparsified SGD with Memory", the rand_k
// operator; Wangni et al. 2018 for unbiased variants). Each encode keeps k = max(1, round(ratio·n))
// distinct coordinates drawn uniformly without replacement. Values are sent unscaled (the
// contractive rand_k of Stich et al., meant for error feedback, which --error_feedback auto turns
// on), not multiplied by n/k.
//
// The indices do not travel: sender and receiver draw them from the same (seed, step) with
// psgd::Rng seeded by derive_seed(seed, step) and Floyd's algorithm (Bentley & Floyd 1987), which
// is portable because Rng and uniform_below are.
//
// Wire format (Payload.bytes), little-endian:
//   uint64  seed                 the sender's codec seed
//   uint64  step                 the sender's encode counter (0, 1, 2, ...)
//   uint64  k                    number of kept coordinates (k <= num_elements)
//   float32 values[k]            in increasing index order
#include <cstdint>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

// The k distinct indices in [0, n) that randk draws for (seed, step), in increasing order.
void randk_indices(std::uint64_t seed, std::uint64_t step, std::uint64_t n, std::uint64_t k,
                   std::vector<std::uint64_t>& out);

class RandkCodec final : public Codec {
 public:
  RandkCodec(double ratio, std::uint64_t seed);
  std::string_view name() const override { return "randk"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  // The step counter (the receiver reads the step from the payload; only the sender needs it).
  std::vector<std::uint8_t> state() const override;
  void restore_state(std::span<const std::uint8_t> state) override;

 private:
  double ratio_;
  std::uint64_t seed_;
  std::uint64_t step_ = 0;
  std::vector<std::uint64_t> indices_;
};

}  // namespace psgd
