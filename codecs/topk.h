#pragma once
// topk: top-k sparsification (Aji & Heafield 2017, "Sparse Communication for Distributed Gradient
// Descent"; with error feedback as in Stich et al. 2018, "Sparsified SGD with Memory", and
// Karimireddy et al. 2019). Keeps the k = max(1, round(ratio · n)) coordinates of largest
// magnitude, exactly; ties in magnitude go to the lower index, so the selection is deterministic.
// NaN counts as larger than any number (a diverging gradient stays visible).
//
// Wire format: the sparse format of codecs/sparse.h (1-byte tag, uint64 k, k float32 values, then
// delta-varint indices or a bitmap, whichever is smaller). Vectors of 2^32 or more elements are
// refused.
//
// Selection: the k-th largest magnitude is estimated from a strided sample, one pass collects the
// coordinates at or above that estimate (about 1.3 k of them), and nth_element on that short list
// settles the exact top k; if the estimate was too high the pass is repeated with a lower one.
#include <cstdint>
#include <vector>

#include "codecs/codec.h"

namespace psgd {

// k = max(1, round(ratio · n)), at most n (0 for an empty vector).
std::uint64_t sparse_k(std::uint64_t n, double ratio);

// The k largest-magnitude coordinates of x in increasing index order. `scratch` is reused between
// calls to avoid allocations.
void select_topk(std::span<const float> x, std::uint64_t k, std::vector<std::uint64_t>& indices,
                 std::vector<std::uint64_t>& scratch);

class TopkCodec final : public Codec {
 public:
  explicit TopkCodec(double ratio);
  std::string_view name() const override { return "topk"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;

 private:
  double ratio_;
  std::vector<std::uint64_t> indices_, scratch_;
  std::vector<float> values_;
};

}  // namespace psgd
