#pragma once
// Deterministic, portable randomness. std::uniform_int_distribution and std::shuffle differ between
// standard libraries, so anything that decides data placement or sampling goes through these
// helpers: the same seed gives the same run on every platform.
#include <cstdint>
#include <random>
#include <span>

namespace psgd {

// SplitMix64 (Steele et al. 2014): derives independent seeds from one job seed and a stream id.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

using Rng = std::mt19937_64;

// Uniform integer in [0, bound) without modulo bias (Lemire 2019).
inline std::uint64_t uniform_below(Rng& rng, std::uint64_t bound) {
  __uint128_t m = static_cast<__uint128_t>(rng()) * bound;
  auto low = static_cast<std::uint64_t>(m);
  if (low < bound) {
    const std::uint64_t threshold = -bound % bound;
    while (low < threshold) {
      m = static_cast<__uint128_t>(rng()) * bound;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

// Fisher-Yates shuffle with uniform_below: identical permutation for a seed on any platform.
template <typename T>
void shuffle(std::span<T> values, Rng& rng) {
  for (std::size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[uniform_below(rng, i)]);
  }
}

}  // namespace psgd
