#include "codecs/topk.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <numeric>
#include <utility>

#include "codecs/sparse.h"
#include "core/error.h"
#include "core/state_io.h"

namespace psgd {
namespace {

inline std::uint32_t magnitude_key(float v) {
  return std::bit_cast<std::uint32_t>(v) & 0x7fffffffu;  // orders |v|, NaN above inf
}

}  // namespace

std::uint64_t sparse_k(std::uint64_t n, double ratio) {
  if (n == 0) return 0;
  const auto k = static_cast<std::uint64_t>(std::llround(ratio * static_cast<double>(n)));
  return std::clamp<std::uint64_t>(k, 1, n);
}

void select_topk(std::span<const float> x, std::uint64_t k, std::vector<std::uint64_t>& indices,
                 std::vector<std::uint64_t>& scratch) {
  const std::uint64_t n = x.size();
  indices.clear();
  if (k >= n) {
    for (std::uint64_t i = 0; i < n; ++i)
      indices.push_back(i);
    return;
  }
  if (k == 0) return;
  if (n >= (std::uint64_t{1} << 32)) {
    throw Error(fmt::format("topk: {} elements; vectors of 2^32 or more are not supported", n));
  }
  // Candidates are (key << 32 | ~index): larger is better, and equal magnitudes prefer the lower
  // index, so plain integer order is the selection order.
  auto pack = [](std::uint32_t key, std::uint64_t i) {
    return (static_cast<std::uint64_t>(key) << 32) | (0xffffffffu - static_cast<std::uint32_t>(i));
  };

  // Estimate the k-th largest key from a strided sample.
  const std::uint64_t m = std::min<std::uint64_t>(n, 8192);
  const std::uint64_t stride = n / m;
  scratch.resize(m);
  for (std::uint64_t j = 0; j < m; ++j)
    scratch[j] = magnitude_key(x[j * stride + stride / 2]);
  // Rank in the sample, with headroom so that one pass usually finds at least k candidates.
  double want = static_cast<double>(k) * static_cast<double>(m) / static_cast<double>(n);
  std::uint64_t rank = static_cast<std::uint64_t>(want * 1.3 + 3.0 * std::sqrt(want) + 8);
  const float* p = x.data();
  for (;;) {
    std::uint32_t threshold = 0;
    if (rank < m) {
      std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(rank),
                       scratch.begin() + static_cast<std::ptrdiff_t>(m), std::greater<>());
      threshold = static_cast<std::uint32_t>(scratch[rank]);
    }
    indices.clear();
    indices.reserve(static_cast<std::size_t>(static_cast<double>(rank) * n / m) + 64);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint32_t key = magnitude_key(p[i]);
      if (key >= threshold) [[unlikely]]
        indices.push_back(pack(key, i));
    }
    if (indices.size() >= k) break;
    rank = rank * 4;  // the sample overestimated the threshold: lower it (0 keeps everything)
    for (std::uint64_t j = 0; j < m; ++j)
      scratch[j] = magnitude_key(x[j * stride + stride / 2]);
  }
  std::nth_element(indices.begin(), indices.begin() + static_cast<std::ptrdiff_t>(k - 1),
                   indices.end(), std::greater<>());
  indices.resize(k);
  for (auto& c : indices)
    c = 0xffffffffu - (c & 0xffffffffu);
  std::sort(indices.begin(), indices.end());
}

std::vector<std::uint64_t> split_topk_budget(std::span<const std::uint64_t> sizes,
                                             std::uint64_t k) {
  const std::size_t m = sizes.size();
  std::vector<std::uint64_t> out(m, 0);
  std::uint64_t n = 0;
  for (auto s : sizes)
    n += s;
  if (n == 0) return out;
  k = std::min(k, n);
  // Proportional shares, floored, at least 1 (non-empty tensors); then the remainder by the
  // largest fractional parts, or the excess (from the minimum of 1) taken from the largest k_l.
  std::vector<double> frac(m, 0.0);
  std::uint64_t given = 0;
  for (std::size_t l = 0; l < m; ++l) {
    if (sizes[l] == 0) continue;
    const double share =
        static_cast<double>(k) * static_cast<double>(sizes[l]) / static_cast<double>(n);
    out[l] = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(share), 1, sizes[l]);
    frac[l] = share - static_cast<double>(out[l]);
    given += out[l];
  }
  while (given < k) {
    std::size_t best = m;
    for (std::size_t l = 0; l < m; ++l) {
      if (out[l] < sizes[l] && (best == m || frac[l] > frac[best])) best = l;
    }
    if (best == m) break;
    ++out[best];
    frac[best] -= 1.0;
    ++given;
  }
  while (given > k) {
    std::size_t best = m;
    for (std::size_t l = 0; l < m; ++l) {
      if (out[l] > 1 && (best == m || frac[l] < frac[best])) best = l;
    }
    if (best == m) break;  // every tensor is at its minimum of 1
    --out[best];
    frac[best] += 1.0;
    --given;
  }
  return out;
}

double warmup_density(double ratio, double warmup_ratio, std::int64_t warmup_steps,
                      std::int64_t step) {
  if (warmup_steps <= 0 || step >= warmup_steps || !(warmup_ratio > ratio)) return ratio;
  const double t =
      static_cast<double>(std::max<std::int64_t>(step, 0)) / static_cast<double>(warmup_steps);
  return warmup_ratio * std::pow(ratio / warmup_ratio, t);
}

TopkCodec::TopkCodec(TopkOptions options)
    : options_(std::move(options)),
      segments_total_(
          std::accumulate(options_.segments.begin(), options_.segments.end(), std::uint64_t{0})) {
  const double ratio = options_.ratio;
  if (!(ratio > 0.0 && ratio <= 1.0)) {
    throw ConfigError(fmt::format("--codec_ratio {}: must be in (0, 1]", ratio));
  }
  if (options_.warmup_steps > 0 && !(options_.warmup_ratio > 0.0 && options_.warmup_ratio <= 1.0)) {
    throw ConfigError(
        fmt::format("--codec_warmup_ratio {}: must be in (0, 1]", options_.warmup_ratio));
  }
}

double TopkCodec::density() const {
  return warmup_density(options_.ratio, options_.warmup_ratio, options_.warmup_steps, encodes_);
}

std::vector<std::uint8_t> TopkCodec::state() const {
  std::vector<std::uint8_t> out;
  StateWriter(out).put<std::int64_t>(encodes_);
  return out;
}

void TopkCodec::restore_state(std::span<const std::uint8_t> state) {
  encodes_ = 0;
  if (state.empty()) return;
  StateReader r(state, "topk codec state");
  const auto encodes = r.get<std::int64_t>();
  r.expect_end();
  if (encodes < 0) r.fail("a negative encode count");
  encodes_ = encodes;
}

void TopkCodec::encode_into(std::span<const float> values, Payload& out) {
  const std::uint64_t n = values.size();
  const std::uint64_t k = sparse_k(n, density());
  ++encodes_;
  if (options_.segments.size() > 1 && segments_total_ == n) {
    const auto budget = split_topk_budget(options_.segments, k);
    indices_.clear();
    std::uint64_t offset = 0;
    for (std::size_t l = 0; l < budget.size(); ++l) {
      const std::uint64_t len = options_.segments[l];
      select_topk(values.subspan(offset, len), budget[l], part_, scratch_);
      for (auto i : part_)
        indices_.push_back(offset + i);
      offset += len;
    }
  } else {
    select_topk(values, k, indices_, scratch_);
  }
  values_.resize(indices_.size());
  for (std::size_t j = 0; j < indices_.size(); ++j)
    values_[j] = values[indices_[j]];
  sparse::encode_into(values.size(), indices_, values_, out);
}

void TopkCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  sparse::decode_add(payload, acc, weight, "topk");
}

}  // namespace psgd
