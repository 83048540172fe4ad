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
//
// Per-tensor selection (TopkOptions::segments, the model's tensor sizes in flat order, which
// workers pass; Lin et al. 2018, "Deep Gradient Compression", select per layer, as do Horovod's
// and GRACE's top-k): the budget k is split over the tensors in proportion to their sizes, every
// tensor getting at least one coordinate (split_topk_budget), and each tensor keeps its own k_l
// largest. One global threshold instead lets the tensors with the largest gradient entries (the
// last layer, the biases) take the budget while the others wait for their residual to grow.
//
// Sparsity warm-up (TopkOptions::warmup_steps; DGC §3.4): the kept fraction starts at
// warmup_ratio and decays exponentially to ratio over the first warmup_steps encodes
// (warmup_density), so the first steps, when the gradient changes fastest, are sent nearly whole.
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

// Splits a budget of k coordinates over tensors of the given sizes: k_l proportional to size_l
// (largest remainders), at least 1 and at most size_l each, summing to k when
// sizes.size() <= k <= sum(sizes) (to max(k, number of non-empty tensors) otherwise).
std::vector<std::uint64_t> split_topk_budget(std::span<const std::uint64_t> sizes, std::uint64_t k);

// The kept fraction at encode `step` (0-based): warmup_ratio · (ratio / warmup_ratio)^(step /
// warmup_steps) during the warm-up, ratio after it (and always when warmup_steps <= 0 or
// warmup_ratio <= ratio).
double warmup_density(double ratio, double warmup_ratio, std::int64_t warmup_steps,
                      std::int64_t step);

struct TopkOptions {
  double ratio = 0.01;
  // The tensors of the flat vector, in order (sizes summing to its length); empty, or sizes that
  // do not sum to the length encoded: one selection over the whole vector.
  std::vector<std::uint64_t> segments;
  std::int64_t warmup_steps = 0;  // encodes of sparsity warm-up (0: none)
  double warmup_ratio = 0.25;     // the kept fraction at the first encode of the warm-up
};

class TopkCodec final : public Codec {
 public:
  explicit TopkCodec(double ratio) : TopkCodec(TopkOptions{.ratio = ratio}) {}
  explicit TopkCodec(TopkOptions options);
  std::string_view name() const override { return "topk"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;

  // The kept fraction of the next encode.
  double density() const;
  // The encode count (the warm-up's position).
  std::vector<std::uint8_t> state() const override;
  void restore_state(std::span<const std::uint8_t> state) override;

 private:
  TopkOptions options_;
  std::uint64_t segments_total_;  // the sum of options_.segments: the length they cover
  std::int64_t encodes_ = 0;
  std::vector<std::uint64_t> indices_, scratch_, part_;
  std::vector<float> values_;
};

}  // namespace psgd
