#include "codecs/randk.h"

#include <bit>
#include <cstring>

#include "codecs/payload_io.h"
#include "codecs/topk.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/state_io.h"

namespace psgd {

void randk_indices(std::uint64_t seed, std::uint64_t step, std::uint64_t n, std::uint64_t k,
                   std::vector<std::uint64_t>& out) {
  out.clear();
  if (k == 0) return;
  Rng rng(derive_seed(seed, step));
  std::vector<std::uint64_t> taken((n + 63) / 64, 0);
  auto test_and_set = [&](std::uint64_t i) {
    const std::uint64_t bit = std::uint64_t{1} << (i % 64);
    const bool was = taken[i / 64] & bit;
    taken[i / 64] |= bit;
    return was;
  };
  for (std::uint64_t j = n - k; j < n; ++j) {
    const std::uint64_t t = uniform_below(rng, j + 1);
    if (test_and_set(t)) test_and_set(j);
  }
  out.reserve(k);
  for (std::uint64_t w = 0; w < taken.size(); ++w) {
    for (std::uint64_t bits = taken[w]; bits != 0; bits &= bits - 1) {
      out.push_back(64 * w + static_cast<std::uint64_t>(std::countr_zero(bits)));
    }
  }
}

RandkCodec::RandkCodec(double ratio, std::uint64_t seed) : ratio_(ratio), seed_(seed) {
  if (!(ratio > 0.0 && ratio <= 1.0)) {
    throw ConfigError(fmt::format("--codec_ratio {}: must be in (0, 1]", ratio));
  }
}

void RandkCodec::encode_into(std::span<const float> values, Payload& p) {
  const std::uint64_t n = values.size(), k = sparse_k(n, ratio_);
  const std::uint64_t step = step_++;
  randk_indices(seed_, step, n, k, indices_);
  p.num_elements = n;
  p.bytes.clear();  // keeps the capacity of a reused payload
  p.bytes.reserve(24 + 4 * k);
  append_value(p.bytes, seed_);
  append_value(p.bytes, step);
  append_value(p.bytes, k);
  for (std::uint64_t i : indices_)
    append_value(p.bytes, values[i]);
}

std::vector<std::uint8_t> RandkCodec::state() const {
  std::vector<std::uint8_t> out;
  StateWriter(out).put<std::uint64_t>(step_);
  return out;
}

void RandkCodec::restore_state(std::span<const std::uint8_t> state) {
  step_ = 0;
  if (state.empty()) return;
  StateReader r(state, "randk codec state");
  step_ = r.get<std::uint64_t>();
  r.expect_end();
}

void RandkCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  const std::uint64_t n = acc.size();
  check_element_count(payload, n, "randk");
  PayloadReader in(payload.view(), "randk");
  const auto seed = in.read<std::uint64_t>();
  const auto step = in.read<std::uint64_t>();
  const auto k = in.read<std::uint64_t>();
  if (k > n) in.fail(fmt::format("claims {} kept coordinates of {}", k, n));
  if (in.remaining() != 4 * k) {
    in.fail(fmt::format("{} values need {} bytes, {} present", k, 4 * k, in.remaining()));
  }
  const auto values = in.take(4 * k);
  std::vector<std::uint64_t> indices;
  randk_indices(seed, step, n, k, indices);
  for (std::uint64_t j = 0; j < k; ++j) {
    float v;
    std::memcpy(&v, values.data() + 4 * j, 4);
    acc[indices[j]] += weight * v;
  }
}

}  // namespace psgd
