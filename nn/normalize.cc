#include "nn/normalize.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace psgd::nn {

const std::vector<std::string>& known_normalizers() {
  static const std::vector<std::string> v{"none", "scale", "minmax", "zscore"};
  return v;
}

void Normalizer::apply(Dataset& d) const {
  if (kind == "none" || d.size() == 0) return;
  const auto f = static_cast<std::size_t>(d.sample_numel());
  if (shift.size() != f || scale.size() != f) {
    throw ConfigError(fmt::format("normaliser {} has statistics for {} features but {} has {}",
                                  kind, shift.size(), d.name, f));
  }
  for (std::size_t i = 0; i < d.images.size(); ++i) {
    const std::size_t k = i % f;
    d.images[i] = (d.images[i] - shift[k]) * scale[k];
  }
}

Normalizer fit_normalizer(const std::string& kind, const Dataset& train,
                          std::span<const std::int64_t> rows) {
  if (std::find(known_normalizers().begin(), known_normalizers().end(), kind) ==
      known_normalizers().end()) {
    throw ConfigError(fmt::format("--normalize {}: choose one of {}", kind,
                                  fmt::join(known_normalizers(), ", ")));
  }
  Normalizer n;
  n.kind = kind;
  if (kind == "none") return n;
  const auto f = static_cast<std::size_t>(train.sample_numel());
  std::vector<std::int64_t> all;
  if (rows.empty()) {
    all.resize(train.size());
    for (std::size_t i = 0; i < all.size(); ++i)
      all[i] = static_cast<std::int64_t>(i);
    rows = all;
  }
  if (rows.empty()) throw ConfigError(fmt::format("--normalize {}: no training samples", kind));
  auto row = [&](std::int64_t r) { return train.images.data() + static_cast<std::size_t>(r) * f; };
  n.shift.assign(f, 0.0f);
  n.scale.assign(f, 1.0f);
  if (kind == "scale") {
    double m = 0;
    for (auto r : rows)
      for (std::size_t k = 0; k < f; ++k)
        m = std::max(m, std::abs(double{row(r)[k]}));
    n.scale.assign(f, m > 0 ? static_cast<float>(1.0 / m) : 1.0f);
  } else if (kind == "minmax") {
    std::vector<float> lo(row(rows[0]), row(rows[0]) + f), hi = lo;
    for (auto r : rows) {
      for (std::size_t k = 0; k < f; ++k) {
        lo[k] = std::min(lo[k], row(r)[k]);
        hi[k] = std::max(hi[k], row(r)[k]);
      }
    }
    for (std::size_t k = 0; k < f; ++k) {
      n.shift[k] = lo[k];
      n.scale[k] = hi[k] > lo[k] ? static_cast<float>(1.0 / (double{hi[k]} - lo[k])) : 0.0f;
    }
  } else {  // zscore, in double so that large sets do not lose precision
    std::vector<double> sum(f, 0.0), sq(f, 0.0);
    for (auto r : rows) {
      for (std::size_t k = 0; k < f; ++k)
        sum[k] += row(r)[k];
    }
    const double count = static_cast<double>(rows.size());
    for (std::size_t k = 0; k < f; ++k)
      sum[k] /= count;
    for (auto r : rows) {
      for (std::size_t k = 0; k < f; ++k) {
        const double d = row(r)[k] - sum[k];
        sq[k] += d * d;
      }
    }
    for (std::size_t k = 0; k < f; ++k) {
      const double sd = std::sqrt(sq[k] / count);
      n.shift[k] = static_cast<float>(sum[k]);
      n.scale[k] = sd > 1e-12 ? static_cast<float>(1.0 / sd) : 0.0f;
    }
  }
  return n;
}

}  // namespace psgd::nn
