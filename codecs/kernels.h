#pragma once
// Reductions the codecs share. Float addition is not associative, so the compiler will not
// vectorise a plain `s += x[i]` loop; these keep 16 independent partial sums (one fixed-length
// inner loop it does vectorise) and add them up in double at the end. The result is deterministic
// for a given input length, and the same in a portable and an AVX2 build of the caller (always
// inlined, so that codecs/simd.h's AVX2 kernels get an AVX2 copy).
#include <cmath>
#include <cstddef>
#include <span>

namespace psgd::kernels {

template <typename F>
[[gnu::always_inline]] inline double lane_sum(std::span<const float> x, F f) {
  constexpr std::size_t kLanes = 16;
  float lanes[kLanes] = {};
  const std::size_t n = x.size();
  const std::size_t whole = n - n % kLanes;
  const float* p = x.data();
  for (std::size_t i = 0; i < whole; i += kLanes) {
    for (std::size_t j = 0; j < kLanes; ++j)
      lanes[j] += f(p[i + j]);
  }
  double s = 0;
  for (std::size_t j = 0; j < kLanes; ++j)
    s += lanes[j];
  for (std::size_t i = whole; i < n; ++i)
    s += f(p[i]);
  return s;
}

[[gnu::always_inline]] inline double sum_abs(std::span<const float> x) {
  return lane_sum(x, [](float v) { return std::fabs(v); });
}

[[gnu::always_inline]] inline double sum_squares(std::span<const float> x) {
  return lane_sum(x, [](float v) { return v * v; });
}

}  // namespace psgd::kernels
