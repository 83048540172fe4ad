#pragma once
// Run-time choice between portable element loops and AVX2 (+ F16C) versions of the same loops.
//
// The project builds for baseline x86-64 (SSE2), which has no 32-bit vector multiply and no
// half-precision conversion instructions, so a few hot loops are compiled twice: once as they are,
// once with PSGD_TARGET_AVX2 (GCC / Clang function multiversioning by hand), and the codec calls
// the AVX2 version only when the CPU has AVX2 and F16C. Both versions compute bit-identical
// results (no FMA contraction is enabled; tests/codecs/simd_test.cc compares them), so a payload
// does not depend on the machine that encoded it.
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PSGD_SIMD_X86 1
#define PSGD_TARGET_AVX2 __attribute__((target("avx2,f16c")))
#endif

namespace psgd::simd {

enum class Isa { kPortable, kAvx2 };

// What the CPU supports (checked once).
Isa best();

// The instruction set codecs use now: best(), unless a test forced another with ForceIsa.
Isa active();

// Forces active() to `isa` (clamped to best()) for its lifetime; for tests comparing versions.
class ForceIsa {
 public:
  explicit ForceIsa(Isa isa);
  ~ForceIsa();
  ForceIsa(const ForceIsa&) = delete;
  ForceIsa& operator=(const ForceIsa&) = delete;

 private:
  int previous_;
};

// binary16 conversions of n elements; the 16-bit side is little-endian and unaligned.
// to_half rounds to nearest even (fp16.h's float_to_half_bits), from_half is exact.
void to_half(const float* src, std::size_t n, std::uint8_t* dst);
void from_half(const std::uint8_t* src, std::size_t n, float* dst);               // dst = x
void from_half_add(const std::uint8_t* src, std::size_t n, float* dst, float w);  // dst += w·x

// kernels::sum_abs (codecs/kernels.h), the same result on both paths.
double sum_abs(const float* x, std::size_t n);

// Sign bits of 8·nbytes floats: bit b of dst[j] is the sign bit of src[8j + b] (-0 and negative
// NaNs count as negative).
void sign_bits(const float* src, std::size_t nbytes, std::uint8_t* dst);

// The inverse for 8·nbytes elements: dst[8j + b] = (bit b of bits[j] ? -scale : +scale), or
// dst[...] += that with kAdd.
void sign_expand(const std::uint8_t* bits, std::size_t nbytes, float scale, float* dst);
void sign_expand_add(const std::uint8_t* bits, std::size_t nbytes, float scale, float* dst);

}  // namespace psgd::simd
