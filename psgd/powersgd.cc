#include "psgd/powersgd.h"

#include <fmt/format.h>
#include <cereal/types/vector.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/rng.h"
#include "network/archive.h"

namespace psgd {

void orthogonalize_columns(std::span<float> m, std::uint64_t rows, int cols, float eps) {
  const auto c = static_cast<std::uint64_t>(cols);
  for (std::uint64_t i = 0; i < c; ++i) {
    double norm2 = 0;
    for (std::uint64_t r = 0; r < rows; ++r)
      norm2 += static_cast<double>(m[r * c + i]) * m[r * c + i];
    const double norm = std::sqrt(norm2) + eps;
    const float inv = norm > 0 ? static_cast<float>(1.0 / norm) : 0.0f;
    for (std::uint64_t r = 0; r < rows; ++r)
      m[r * c + i] *= inv;
    for (std::uint64_t j = i + 1; j < c; ++j) {
      double dot = 0;
      for (std::uint64_t r = 0; r < rows; ++r)
        dot += static_cast<double>(m[r * c + i]) * m[r * c + j];
      const auto d = static_cast<float>(dot);
      for (std::uint64_t r = 0; r < rows; ++r)
        m[r * c + j] -= d * m[r * c + i];
    }
  }
}

PowerSgd::PowerSgd(std::vector<MatrixShape> shapes, int world, PowerSgdOptions options)
    : world_(world), options_(options) {
  PSGD_CHECK(world >= 1 && options.rank >= 1, "powersgd: world {} rank {}", world, options.rank);
  std::uint64_t offset = 0, p = 0, q = 0, u = 0;
  for (const MatrixShape& s : shapes) {
    const std::uint64_t size = s.rows * s.cols;
    const std::uint64_t r =
        std::min<std::uint64_t>({s.rows, s.cols, static_cast<std::uint64_t>(options.rank)});
    const double compressed = static_cast<double>((s.rows + s.cols) * r);
    if (size > 0 && compressed * options.min_compression_rate < static_cast<double>(size)) {
      compressed_.push_back({.offset = offset,
                             .rows = s.rows,
                             .cols = s.cols,
                             .rank = static_cast<int>(r),
                             .p = p,
                             .q = q});
      p += s.rows * r;
      q += s.cols * r;
    } else if (size > 0) {
      uncompressed_.push_back({.offset = offset, .size = size, .at = u});
      u += size;
    }
    offset += size;
  }
  length_ = offset;
  for (Compressed& c : compressed_)
    c.p += u;
  first_.assign(u + p, 0.0f);
  second_.assign(q, 0.0f);
  q_.assign(q, 0.0f);
  x_.assign(length_, 0.0f);
  error_.assign(length_, 0.0f);
}

void PowerSgd::initialise_q() {
  // Standard normal by Box-Muller from the shared seed: portable, the same on every worker.
  Rng rng(options_.seed);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  for (std::size_t i = 0; i < q_.size(); i += 2) {
    const double a = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 2.0 * std::numbers::pi * uniform();
    q_[i] = static_cast<float>(a * std::cos(t));
    if (i + 1 < q_.size()) q_[i + 1] = static_cast<float>(a * std::sin(t));
  }
  have_q_ = true;
}

std::span<float> PowerSgd::first(std::span<const float> gradient) {
  if (gradient.size() != length_) {
    throw ConfigError(
        fmt::format("powersgd: the gradient has {} values but the model's tensors add up to {}",
                    gradient.size(), length_));
  }
  if (!have_q_) initialise_q();
  for (std::size_t i = 0; i < length_; ++i)
    x_[i] = gradient[i] + error_[i];
  for (const Uncompressed& u : uncompressed_)
    std::copy_n(x_.begin() + static_cast<std::ptrdiff_t>(u.offset), u.size,
                first_.begin() + static_cast<std::ptrdiff_t>(u.at));
  for (const Compressed& c : compressed_) {
    const auto r = static_cast<std::uint64_t>(c.rank);
    std::span<float> q(q_.data() + c.q, c.cols * r);
    orthogonalize_columns(q, c.cols, c.rank, options_.orthogonalization_eps);
    const float* m = x_.data() + c.offset;
    float* out = first_.data() + c.p;
    for (std::uint64_t i = 0; i < c.rows; ++i) {  // P = X Q
      float acc[64] = {};
      const float* row = m + i * c.cols;
      for (std::uint64_t j = 0; j < c.cols; ++j) {
        const float v = row[j];
        const float* qj = q.data() + j * r;
        for (std::uint64_t k = 0; k < r; ++k)
          acc[k] += v * qj[k];
      }
      std::copy_n(acc, r, out + i * r);
    }
  }
  return first_;
}

std::span<float> PowerSgd::second() {
  std::fill(second_.begin(), second_.end(), 0.0f);
  for (const Compressed& c : compressed_) {
    const auto r = static_cast<std::uint64_t>(c.rank);
    std::span<float> p(first_.data() + c.p, c.rows * r);
    orthogonalize_columns(p, c.rows, c.rank, options_.orthogonalization_eps);
    const float* m = x_.data() + c.offset;
    float* q = second_.data() + c.q;
    for (std::uint64_t i = 0; i < c.rows; ++i) {  // Q = Xᵀ P, row by row of X
      const float* row = m + i * c.cols;
      const float* pi = p.data() + i * r;
      for (std::uint64_t j = 0; j < c.cols; ++j) {
        const float v = row[j];
        for (std::uint64_t k = 0; k < r; ++k)
          q[j * r + k] += v * pi[k];
      }
    }
  }
  return second_;
}

void PowerSgd::finish(std::span<float> update) {
  PSGD_CHECK_EQ(update.size(), length_, "powersgd: update length");
  const float scale = 1.0f / static_cast<float>(world_);
  for (const Uncompressed& u : uncompressed_)
    for (std::uint64_t i = 0; i < u.size; ++i)
      update[u.offset + i] = first_[u.at + i] * scale;
  for (std::size_t i = 0; i < second_.size(); ++i)
    q_[i] = second_[i] * scale;
  for (const Compressed& c : compressed_) {
    const auto r = static_cast<std::uint64_t>(c.rank);
    const float* p = first_.data() + c.p;
    const float* q = q_.data() + c.q;
    for (std::uint64_t i = 0; i < c.rows; ++i) {  // update = P Qᵀ; error = X - update
      const float* pi = p + i * r;
      for (std::uint64_t j = 0; j < c.cols; ++j) {
        float v = 0;
        for (std::uint64_t k = 0; k < r; ++k)
          v += pi[k] * q[j * r + k];
        const std::uint64_t at = c.offset + i * c.cols + j;
        update[at] = v;
        error_[at] = x_[at] - v;
      }
    }
  }
}

namespace {
constexpr std::uint32_t kPowerSgdStateVersion = 1;
}

std::vector<std::uint8_t> PowerSgd::snapshot() const {
  std::vector<std::uint8_t> bytes;
  wire::OutputArchive ar(bytes);
  ar(kPowerSgdStateVersion, static_cast<std::uint64_t>(length_), have_q_, error_, q_);
  return bytes;
}

void PowerSgd::restore(std::span<const std::uint8_t> state) {
  wire::InputArchive ar(state);
  std::uint32_t version = 0;
  std::uint64_t length = 0;
  bool have_q = false;
  std::vector<float> error, q;
  ar(version, length, have_q, error, q);
  if (version != kPowerSgdStateVersion || length != length_ || error.size() != error_.size() ||
      q.size() != q_.size() || ar.remaining() != 0) {
    throw ConfigError(fmt::format(
        "powersgd checkpoint state does not fit this model (version {}, {} values, Q of {}; this "
        "job: {} values, Q of {})",
        version, length, q.size(), length_, q_.size()));
  }
  have_q_ = have_q;
  error_ = std::move(error);
  q_ = std::move(q);
}

}  // namespace psgd
