#include "codecs/simd.h"

#include <atomic>
#include <bit>
#include <cstring>

#include "codecs/fp16.h"
#include "codecs/kernels.h"

#ifdef PSGD_SIMD_X86
#include <cpuid.h>
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

// __restrict: dst is bytes, which may alias anything, so without it every store would force
// the loads after it to be redone in order.
void sign_bits_portable(const float* __restrict src, std::size_t nbytes,
                        std::uint8_t* __restrict dst) {
  for (std::size_t j = 0; j < nbytes; ++j) {
    std::uint32_t byte = 0;
    for (unsigned b = 0; b < 8; ++b)
      byte |= (std::bit_cast<std::uint32_t>(src[8 * j + b]) >> 31) << b;
    dst[j] = static_cast<std::uint8_t>(byte);
  }
}

template <bool kAdd>
void sign_expand_portable(const std::uint8_t* __restrict bits, std::size_t nbytes, float scale,
                          float* __restrict dst) {
  const std::uint32_t s = std::bit_cast<std::uint32_t>(scale);
  for (std::size_t j = 0; j < nbytes; ++j) {
    const std::uint32_t byte = bits[j];
    for (unsigned b = 0; b < 8; ++b) {
      const float v = std::bit_cast<float>(s ^ (((byte >> b) & 1u) << 31));
      if constexpr (kAdd) {
        dst[8 * j + b] += v;
      } else {
        dst[8 * j + b] = v;
      }
    }
  }
}

#ifdef PSGD_SIMD_X86
template <bool kAdd>
PSGD_TARGET_AVX2 void sign_expand_avx2(const std::uint8_t* bits, std::size_t nbytes, float scale,
                                       float* dst) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256 vs = _mm256_set1_ps(scale);
  for (std::size_t j = 0; j < nbytes; ++j) {
    const __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[j]), lane_bit);
    const __m256i neg = _mm256_and_si256(_mm256_cmpeq_epi32(b, lane_bit), sign);
    const __m256 v = _mm256_xor_ps(vs, _mm256_castsi256_ps(neg));
    if constexpr (kAdd) {
      _mm256_storeu_ps(dst + 8 * j, _mm256_add_ps(_mm256_loadu_ps(dst + 8 * j), v));
    } else {
      _mm256_storeu_ps(dst + 8 * j, v);
    }
  }
}

PSGD_TARGET_AVX2 double sum_abs_avx2(const float* x, std::size_t n) {
  return kernels::sum_abs({x, n});
}

PSGD_TARGET_AVX2 void sign_bits_avx2(const float* src, std::size_t nbytes, std::uint8_t* dst) {
  std::size_t j = 0;
  for (; j + 4 <= nbytes; j += 4) {
    const float* p = src + 8 * j;
    const auto m = static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_loadu_ps(p))) |
                   static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_loadu_ps(p + 8))) << 8 |
                   static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_loadu_ps(p + 16))) << 16 |
                   static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_loadu_ps(p + 24))) << 24;
    std::memcpy(dst + j, &m, 4);
  }
  sign_bits_portable(src + 8 * j, nbytes - j, dst + j);
}

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
  // __builtin_cpu_supports("avx2") also checks that the OS saves the YMM registers; F16C is read
  // from CPUID leaf 1 (Clang's builtin does not know the name "f16c").
  static const Isa isa = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && f16c ? Isa::kAvx2 : Isa::kPortable;
  }();
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

void sign_expand(const std::uint8_t* bits, std::size_t nbytes, float scale, float* dst) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return sign_expand_avx2<false>(bits, nbytes, scale, dst);
#endif
  sign_expand_portable<false>(bits, nbytes, scale, dst);
}

void sign_expand_add(const std::uint8_t* bits, std::size_t nbytes, float scale, float* dst) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return sign_expand_avx2<true>(bits, nbytes, scale, dst);
#endif
  sign_expand_portable<true>(bits, nbytes, scale, dst);
}

double sum_abs(const float* x, std::size_t n) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return sum_abs_avx2(x, n);
#endif
  return kernels::sum_abs({x, n});
}

void sign_bits(const float* src, std::size_t nbytes, std::uint8_t* dst) {
#ifdef PSGD_SIMD_X86
  if (active() == Isa::kAvx2) return sign_bits_avx2(src, nbytes, dst);
#endif
  sign_bits_portable(src, nbytes, dst);
}

}  // namespace psgd::simd
