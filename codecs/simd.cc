#include "codecs/simd.h"

#include <atomic>
#include <cstring>

#include "codecs/fp16.h"

#ifdef PSGD_SIMD_X86
#include <immintrin.h>
#endif

namespace psgd::simd {
namespace {

std::atomic<int> forced{-1};

void to_half_portable(const float* src, std::size_t n, std::uint8_t* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = float_to_half_bits(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

template <bool kAdd>
void from_half_portable(const std::uint8_t* src, std::size_t n, float* dst, float w) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    if constexpr (kAdd) {
      dst[i] += w * half_bits_to_float(h);
    } else {
      dst[i] = half_bits_to_float(h);
    }
  }
}

#ifdef PSGD_SIMD_X86
PSGD_TARGET_AVX2 void to_half_f16c(const float* src, std::size_t n, std::uint8_t* dst) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
  }
  to_half_portable(src + i, n - i, dst + 2 * i);
}

template <bool kAdd>
PSGD_TARGET_AVX2 void from_half_f16c(const std::uint8_t* src, std::size_t n, float* dst, float w) {
  std::size_t i = 0;
  const __m256 vw = _mm256_set1_ps(w);
  for (; i + 8 <= n; i += 8) {
    const __m256 x =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
    if constexpr (kAdd) {
      _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_mul_ps(vw, x)));
    } else {
      _mm256_storeu_ps(dst + i, x);
    }
  }
  from_half_portable<kAdd>(src + 2 * i, n - i, dst + i, w);
}
#endif

}  // namespace

Isa best() {
#ifdef PSGD_SIMD_X86
  static const Isa isa = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")
                             ? Isa::kAvx2
                             : Isa::kPortable;
  return isa;
#else
  return Isa::kPortable;
#endif
}

Isa active() {
  const int f = forced.load(std::memory_order_relaxed);
  return f < 0 ? best() : static_cast<Isa>(f);
}

ForceIsa::ForceIsa(Isa isa) : previous_(forced.load()) {
  forced.store(static_cast<int>(isa <= best() ? isa : best()));
}

ForceIsa::~ForceIsa() {
  forced.store(previous_);
}

void to_half(const float* src, std::size_t n, std::uint8_t* dst) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return to_half_f16c(src, n, dst);
#endif
  to_half_portable(src, n, dst);
}

void from_half(const std::uint8_t* src, std::size_t n, float* dst) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return from_half_f16c<false>(src, n, dst, 1.0f);
#endif
  from_half_portable<false>(src, n, dst, 1.0f);
}

void from_half_add(const std::uint8_t* src, std::size_t n, float* dst, float w) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return from_half_f16c<true>(src, n, dst, w);
#endif
  from_half_portable<true>(src, n, dst, w);
}

}  // namespace psgd::simd
