// Over 400 lines on purpose: QSGD's portable quantiser and its AVX2 variant, which must stay
// bit-identical to it, are kept side by side so a change to one is seen next to the other.
#include "codecs/qsgd.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "codecs/kernels.h"
#include "codecs/payload_io.h"
#include "codecs/simd.h"
#include "core/error.h"
#include "core/state_io.h"

#ifdef PSGD_SIMD_X86
#include <immintrin.h>
#endif

namespace psgd {
namespace {

constexpr std::size_t kChunk = 4096;  // elements quantised per step (a multiple of 16)

unsigned level_bits(std::uint32_t s) {
  return static_cast<unsigned>(std::bit_width(s));
}

// Fraction bits F of the fixed-point stochastic rounding (see quantise): 31 − lbits for up to 127
// levels, so that level and sign fill a 32-bit lane exactly, 24 beyond. Always at least 24.
unsigned fraction_bits(unsigned lbits) {
  return lbits <= 7 ? 31 - lbits : 24;
}

std::uint64_t bucket_count(std::uint64_t n, std::uint64_t bucket) {
  if (n == 0) return 0;
  if (bucket == 0 || bucket >= n) return 1;
  return n / bucket + (n % bucket != 0);
}

// The uniforms: 8 independent xorshift128+ streams (Vigna 2017, "Further scramblings of
// Marsaglia's xorshift generators", shifts 23/18/5), seeded from the encode's key with SplitMix64.
// One step of all 8 gives 16 uniform 32-bit words, for 16 consecutive elements: element 16t + 2k
// takes the low half of stream k's t-th output, element 16t + 2k + 1 the high half. The encoder
// uses the top F bits of each word (never xorshift128+'s weak lowest bits). Two AVX2 registers
// hold the 8 streams, so the vector path computes exactly these words.
constexpr unsigned kStreams = 8;
constexpr unsigned kPerStep = 2 * kStreams;

struct Streams {
  std::uint64_t s0[kStreams], s1[kStreams];
};

Streams seed_streams(std::uint64_t key) {
  Streams st;
  for (unsigned k = 0; k < kStreams; ++k) {
    st.s0[k] = derive_seed(key, 2 * k);
    st.s1[k] = derive_seed(key, 2 * k + 1);
    if ((st.s0[k] | st.s1[k]) == 0) st.s1[k] = 1;  // the one state xorshift must not be in
  }
  return st;
}

[[gnu::always_inline]] inline void next_words(Streams& st, std::uint32_t* out) {
  for (unsigned k = 0; k < kStreams; ++k) {
    std::uint64_t x = st.s0[k];
    const std::uint64_t y = st.s1[k];
    const std::uint64_t r = x + y;
    st.s0[k] = y;
    x ^= x << 23;
    st.s1[k] = x ^ y ^ (x >> 18) ^ (y >> 5);
    out[2 * k] = static_cast<std::uint32_t>(r);
    out[2 * k + 1] = static_cast<std::uint32_t>(r >> 32);
  }
}

// Packs groups of 8 codes of b bits into b bytes each; `out` must have sizeof(W) bytes of slack.
template <typename W>
[[gnu::always_inline]] inline std::uint8_t* pack(const std::uint16_t* codes, std::size_t groups,
                                                 unsigned b, std::uint8_t* out) {
  for (std::size_t g = 0; g < groups; ++g) {
    W w = 0;
    for (unsigned j = 0; j < 8; ++j)
      w |= static_cast<W>(codes[8 * g + j]) << (j * b);
    std::memcpy(out, &w, sizeof(W));
    out += b;
  }
  return out;
}

// Unpacks `groups` groups of 8 codes starting at byte `offset`; reads stay inside `bytes`.
template <typename W>
[[gnu::always_inline]] inline void unpack(std::span<const std::uint8_t> bytes, std::size_t offset,
                                          std::size_t groups, unsigned b, std::uint16_t* codes) {
  const W mask = (W{1} << b) - 1;
  for (std::size_t g = 0; g < groups; ++g, offset += b) {
    W w = 0;
    if (offset + sizeof(W) <= bytes.size()) {
      std::memcpy(&w, bytes.data() + offset, sizeof(W));
    } else {
      std::memcpy(&w, bytes.data() + offset, bytes.size() - offset);
    }
    for (unsigned j = 0; j < 8; ++j)
      codes[8 * g + j] = static_cast<std::uint16_t>((w >> (j * b)) & mask);
  }
}

// One element's code: the level l = ⌊r + u⌋ of r = min(|x| · s / ‖v‖, s) with u uniform in
// [0, 1), computed exactly in fixed point with F fraction bits: R = ⌊r · 2^F⌋ and the top F bits
// U of a random word give l = ⌊(R + U) / 2^F⌋, which is ⌊r⌋ + 1 with probability
// ⌊frac(r) · 2^F⌋ / 2^F and ⌊r⌋ otherwise (unbiased up to 2^−F of a level). `scale_f` is
// s / ‖v‖ · 2^F and `fs_f` is s · 2^F, so a NaN maps to level s, never to an undefined conversion.
[[gnu::always_inline]] inline std::uint16_t quantise_one(float x, float scale_f, float fs_f,
                                                         unsigned fbits, unsigned lbits,
                                                         std::uint32_t word) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  const float a = std::fabs(x) * scale_f;
  const float r = a < fs_f ? a : fs_f;
  const auto big_r = static_cast<std::uint64_t>(static_cast<std::int64_t>(r));
  const std::uint64_t l = (big_r + (word >> (32 - fbits))) >> fbits;
  return static_cast<std::uint16_t>(l | ((bits >> 31) << lbits));
}

struct EncodeArgs {
  const float* x;
  std::size_t n;
  std::uint64_t d;      // bucket size, 0 < d
  std::uint8_t* norms;  // where ‖bucket‖₂ goes, 4 bytes per bucket
  std::uint32_t s;
  unsigned lbits;
  std::uint64_t key;  // seeds the uniforms
  std::uint8_t* dst;  // the packed codes, with 16 bytes of slack
};

// s / ‖v‖ · 2^F for a bucket of norm ‖v‖ (0 for a zero or non-finite norm).
[[gnu::always_inline]] inline float scale_of(float norm, std::uint32_t s, unsigned fbits) {
  const float sc = static_cast<float>(s) / norm * std::ldexp(1.0f, static_cast<int>(fbits));
  return (norm > 0 && std::isfinite(sc)) ? sc : 0.0f;
}

// Computes ‖bucket k‖₂ and stores it.
[[gnu::always_inline]] inline float bucket_norm(const EncodeArgs& a, std::uint64_t k) {
  const std::size_t lo = k * a.d, len = std::min<std::uint64_t>(a.d, a.n - lo);
  const auto norm = static_cast<float>(std::sqrt(kernels::sum_squares({a.x + lo, len})));
  std::memcpy(a.norms + 4 * k, &norm, 4);
  return norm;
}

[[gnu::always_inline]] inline float stored_norm(const EncodeArgs& a, std::uint64_t k) {
  float norm;
  std::memcpy(&norm, a.norms + 4 * k, 4);
  return norm;
}

// Computes the bucket norms, quantises and packs every element, in one pass over memory when
// buckets are small (each bucket's norm is taken when the quantiser reaches it, so its elements
// are still in cache for the second look). Compiled twice (portable and AVX2, codecs/simd.h); the
// AVX2 build uses encode_codes_avx2 below for up to 127 levels.
[[gnu::always_inline]] inline void encode_codes(const EncodeArgs& a) {
  const unsigned b = a.lbits + 1, fbits = fraction_bits(a.lbits);
  const float fs_f = static_cast<float>(a.s) * std::ldexp(1.0f, static_cast<int>(fbits));
  std::uint16_t codes[kChunk];
  std::uint32_t words[kChunk];
  Streams st = seed_streams(a.key);
  std::uint8_t* dst = a.dst;
  std::uint64_t next_bucket = 0;  // the first bucket whose norm is not known yet
  float scale = 0;                // s / ‖v‖ · 2^F of the current bucket
  for (std::size_t c = 0; c < a.n; c += kChunk) {
    const std::size_t m = std::min<std::size_t>(kChunk, a.n - c);
    for (std::size_t j = 0; j < m; j += kPerStep)
      next_words(st, words + j);
    // Split the chunk where buckets change, so each piece uses one scale.
    for (std::size_t i = c; i < c + m;) {
      const std::uint64_t k = i / a.d;
      if (k == next_bucket) {
        scale = scale_of(bucket_norm(a, k), a.s, fbits);
        ++next_bucket;
      }
      const std::size_t end = std::min<std::uint64_t>(c + m, (k + 1) * a.d);
      for (std::size_t j = i; j < end; ++j)
        codes[j - c] = quantise_one(a.x[j], scale, fs_f, fbits, a.lbits, words[j - c]);
      i = end;
    }
    const std::size_t groups = (m + 7) / 8;
    std::fill(codes + m, codes + groups * 8, std::uint16_t{0});
    dst = b <= 8 ? pack<std::uint64_t>(codes, groups, b, dst)
                 : pack<unsigned __int128>(codes, groups, b, dst);
  }
}

void encode_codes_portable(const EncodeArgs& a) {
  encode_codes(a);
}

struct DecodeArgs {
  std::span<const std::uint8_t> packed;
  std::span<const std::uint8_t> norms;
  std::size_t n;
  std::uint64_t d;
  std::uint32_t s;
  unsigned lbits;
  float weight;
  float* dst;
};

// Unpacks and scales every element (dst = or += value); returns the largest level seen, which
// the caller checks against s. Compiled twice like encode_codes.
template <bool kAdd>
[[gnu::always_inline]] inline std::uint32_t decode_codes(const DecodeArgs& a) {
  const unsigned b = a.lbits + 1;
  const float inv_s = 1.0f / static_cast<float>(a.s);
  std::uint16_t codes[kChunk];
  const std::uint16_t level_mask = static_cast<std::uint16_t>((1u << a.lbits) - 1);
  std::uint32_t worst = 0;
  float* dst = a.dst;
  for (std::size_t c = 0; c < a.n; c += kChunk) {
    const std::size_t m = std::min<std::size_t>(kChunk, a.n - c);
    const std::size_t groups = (m + 7) / 8;
    const std::size_t offset = (c / 8) * b;
    if (b <= 8) {
      unpack<std::uint64_t>(a.packed, offset, groups, b, codes);
    } else {
      unpack<unsigned __int128>(a.packed, offset, groups, b, codes);
    }
    for (std::size_t i = c; i < c + m;) {
      const std::uint64_t k = i / a.d;
      const std::size_t end = std::min<std::uint64_t>(c + m, (k + 1) * a.d);
      float norm;
      std::memcpy(&norm, a.norms.data() + 4 * k, 4);
      const float mult = a.weight * norm * inv_s;
      std::uint32_t top = 0;
      for (std::size_t j = i; j < end; ++j) {
        const std::uint16_t code = codes[j - c];
        const std::uint32_t level = code & level_mask;
        top = std::max(top, level);
        const std::uint32_t neg = static_cast<std::uint32_t>(code >> a.lbits) << 31;
        const float v =
            std::bit_cast<float>(std::bit_cast<std::uint32_t>(
                                     mult * static_cast<float>(static_cast<std::int32_t>(level))) ^
                                 neg);
        if constexpr (kAdd) {
          dst[j] += v;
        } else {
          dst[j] = v;
        }
      }
      worst = std::max(worst, top);
      i = end;
    }
  }
  return worst;
}

template <bool kAdd>
std::uint32_t decode_codes_portable(const DecodeArgs& a) {
  return decode_codes<kAdd>(a);
}

#ifdef PSGD_SIMD_X86
PSGD_TARGET_AVX2 void encode_codes_avx2(const EncodeArgs& a) {
  encode_codes(a);
}

// Stores the norms of buckets up to k (at most the last) that are not stored yet; normed counts
// those that are.
[[gnu::always_inline]] PSGD_TARGET_AVX2 inline void ensure_norms_avx2(const EncodeArgs& a,
                                                                      std::uint64_t& normed,
                                                                      std::uint64_t k,
                                                                      std::uint64_t buckets) {
  for (; normed <= k && normed < buckets; ++normed)
    bucket_norm(a, normed);
}

// One step of four of the xorshift128+ streams (next_words), in the lanes of s0 and s1.
[[gnu::always_inline]] PSGD_TARGET_AVX2 inline __m256i xorshift_step(__m256i& s0, __m256i& s1) {
  const __m256i r = _mm256_add_epi64(s0, s1);
  __m256i t = s0;
  const __m256i u = s1;
  s0 = u;
  t = _mm256_xor_si256(t, _mm256_slli_epi64(t, 23));
  s1 = _mm256_xor_si256(_mm256_xor_si256(t, u),
                        _mm256_xor_si256(_mm256_srli_epi64(t, 18), _mm256_srli_epi64(u, 5)));
  return r;
}

// quantise_one on 8 lanes with F = kF fraction bits: level | sign << lbits in each 32-bit lane.
template <unsigned kF>
[[gnu::always_inline]] PSGD_TARGET_AVX2 inline __m256i quantise8(const float* p, __m256i w,
                                                                 __m256 sc, __m256 fs,
                                                                 __m256 sign_mask) {
  const __m256 v = _mm256_loadu_ps(p);
  // min(a, fs) is fs when a is NaN, as quantise_one's comparison.
  const __m256 r = _mm256_min_ps(_mm256_mul_ps(_mm256_andnot_ps(sign_mask, v), sc), fs);
  __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(r), _mm256_srli_epi32(w, 32 - kF));
  q = _mm256_or_si256(q, _mm256_castps_si256(_mm256_and_ps(v, sign_mask)));
  return _mm256_srli_epi32(q, kF);
}

// `steps` steps of 16 elements of one bucket (scale s / ‖v‖ · 2^F), lbits = kL: quantise_one on
// 8 lanes, the level and sign formed in one 32-bit lane, then the codes packed by multiply-adds and
// shifts. Returns where the next code goes. A function of its own so that the streams and
// constants stay in registers.
//
// With kSquares, the same loop also accumulates the squares of sq[0, 16 · steps) into 16 float
// lanes (stored to `lanes`) in the order of kernels::lane_sum, so the norm is bit-identical to
// bucket_norm's: the norm of a bucket two ahead, computed in the shadow of this bucket's
// quantisation. Before, each norm was a reduction of its own between two runs whose dependency
// chains (two accumulators, then a serial sum of the 16 lanes in double) stalled the quantiser.
template <unsigned kL, bool kSquares>
[[gnu::always_inline]] PSGD_TARGET_AVX2 inline std::uint8_t* encode_run_avx2_impl(
    const float* x, std::size_t steps, float scale, float fs_f, Streams& st, std::uint8_t* dst,
    const float* sq, float* lanes) {
  constexpr unsigned b = kL + 1, kF = 31 - kL;
  __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.s0));
  __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.s1));
  __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.s0 + 4));
  __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.s1 + 4));
  const __m256 sc = _mm256_set1_ps(scale), fs = _mm256_set1_ps(fs_f);
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i pair_mul = _mm256_set1_epi32(static_cast<int>(1u | (1u << (b + 16))));
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (std::size_t t = 0; t < steps; ++t, x += kPerStep) {
    if constexpr (kSquares) {
      const __m256 a = _mm256_loadu_ps(sq + kPerStep * t);
      const __m256 c = _mm256_loadu_ps(sq + kPerStep * t + 8);
      acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(a, a));
      acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(c, c));
    }
    const __m256i c0 = quantise8<kF>(x, xorshift_step(x0, y0), sc, fs, sign_mask);
    const __m256i c1 = quantise8<kF>(x + 8, xorshift_step(x1, y1), sc, fs, sign_mask);
    // 16 codes as 16-bit lanes in element order; pairs, then quads, then octets of codes.
    const __m256i c16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(c0, c1), 0xD8);
    const __m256i e = _mm256_madd_epi16(c16, pair_mul);
    __m256i q = _mm256_blend_epi32(_mm256_or_si256(e, _mm256_srli_epi64(e, 32 - 2 * b)),
                                   _mm256_setzero_si256(), 0xAA);
    q = _mm256_or_si256(q, _mm256_slli_epi64(_mm256_bsrli_epi128(q, 8), 4 * b));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(q));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + b), _mm256_extracti128_si256(q, 1));
    dst += 2 * b;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.s0), x0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.s1), y0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.s0 + 4), x1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.s1 + 4), y1);
  if constexpr (kSquares) {
    _mm256_storeu_ps(lanes, acc0);
    _mm256_storeu_ps(lanes + 8, acc1);
  }
  return dst;
}

// One run of encode_run_avx2_impl; with `sq` not null also the squares of sq (see above).
template <unsigned kL>
[[gnu::noinline]] PSGD_TARGET_AVX2 std::uint8_t* encode_run_avx2(const float* x, std::size_t steps,
                                                                 float scale, float fs_f,
                                                                 Streams& st, std::uint8_t* dst,
                                                                 const float* sq = nullptr,
                                                                 float* lanes = nullptr) {
  if (sq != nullptr) {
    return encode_run_avx2_impl<kL, true>(x, steps, scale, fs_f, st, dst, sq, lanes);
  }
  return encode_run_avx2_impl<kL, false>(x, steps, scale, fs_f, st, dst, nullptr, nullptr);
}

// encode_codes for up to 127 levels (lbits = kL ≤ 7, b ≤ 8 bits per code, F = 31 − kL): runs of
// whole 16-element steps inside one bucket go to encode_run_avx2; a step that straddles buckets
// (sizes that are not multiples of 16) and the last n mod 16 elements go one element at a time.
template <unsigned kL>
PSGD_TARGET_AVX2 void encode_fast_avx2(const EncodeArgs& a) {
  constexpr unsigned b = kL + 1, kF = 31 - kL;
  const float fs_f = static_cast<float>(a.s) * std::ldexp(1.0f, static_cast<int>(kF));
  if (a.n == 0) return;
  const float* const x = a.x;
  const std::size_t n = a.n;
  const std::uint64_t d = a.d, buckets = n / d + (n % d != 0);
  Streams st = seed_streams(a.key);
  std::uint8_t* dst = a.dst;
  // Norms are taken ahead of the quantiser, so that each norm's loads and reduction overlap with
  // an earlier bucket's quantisation instead of stalling it: for buckets of a multiple of 16
  // elements, two ahead inside the quantiser's loop (encode_run_avx2 with `sq`), otherwise (and
  // for the first two and the last buckets) one ahead, between runs.
  const std::uint64_t full_buckets = n / d;
  const bool fuse = d % kPerStep == 0;
  std::uint64_t normed = 0;  // buckets whose norm is stored
  ensure_norms_avx2(a, normed, 1, buckets);
  std::uint64_t k0 = 0, k0_end = d;  // the bucket of element i, and where it ends
  float scale = scale_of(stored_norm(a, 0), a.s, kF);
  std::uint32_t words[kPerStep];
  std::uint16_t codes[kPerStep];
  // Elements [i, end) one at a time, each with its bucket's scale; end − i ≤ 16.
  auto one_by_one = [&](std::size_t i, std::size_t end) {
    next_words(st, words);
    std::fill(codes, codes + kPerStep, std::uint16_t{0});
    std::uint64_t k = k0, k_end = k0_end;
    for (std::size_t j = i; j < end; ++j) {
      for (; j >= k_end; k_end += d)
        ++k;
      codes[j - i] =
          quantise_one(x[j], scale_of(stored_norm(a, k), a.s, kF), fs_f, kF, kL, words[j - i]);
    }
    return pack<std::uint64_t>(codes, (end - i + 7) / 8, b, dst);
  };
  const std::size_t whole = n - n % kPerStep;
  for (std::size_t i = 0; i < whole;) {
    if (i >= k0_end) {
      do {
        ++k0;
        k0_end += d;
      } while (i >= k0_end);
      scale = scale_of(stored_norm(a, k0), a.s, kF);
    }
    ensure_norms_avx2(a, normed, k0 + 1, buckets);
    const std::size_t run = std::min<std::uint64_t>(whole - i, k0_end - i) / kPerStep;
    if (run > 0 && fuse && run * kPerStep == d && normed == k0 + 2 && k0 + 2 < full_buckets) {
      float lanes[kPerStep];
      dst = encode_run_avx2<kL>(x + i, run, scale, fs_f, st, dst, x + (k0 + 2) * d, lanes);
      double sum = 0;  // as kernels::lane_sum (d is a multiple of 16: no tail)
      for (float l : lanes)
        sum += l;
      const auto norm = static_cast<float>(std::sqrt(sum));
      std::memcpy(a.norms + 4 * normed, &norm, 4);
      ++normed;
      i += run * kPerStep;
    } else if (run > 0) {
      dst = encode_run_avx2<kL>(x + i, run, scale, fs_f, st, dst);
      i += run * kPerStep;
    } else {  // the step straddles buckets
      ensure_norms_avx2(a, normed, (i + kPerStep - 1) / d, buckets);
      dst = one_by_one(i, i + kPerStep);
      i += kPerStep;
    }
  }
  if (whole == n) return;
  ensure_norms_avx2(a, normed, buckets - 1, buckets);
  one_by_one(whole, n);
}

PSGD_TARGET_AVX2 void encode_codes_fast_avx2(const EncodeArgs& a) {
  switch (a.lbits) {
    case 1:
      return encode_fast_avx2<1>(a);
    case 2:
      return encode_fast_avx2<2>(a);
    case 3:
      return encode_fast_avx2<3>(a);
    case 4:
      return encode_fast_avx2<4>(a);
    case 5:
      return encode_fast_avx2<5>(a);
    case 6:
      return encode_fast_avx2<6>(a);
    case 7:
      return encode_fast_avx2<7>(a);
    default:
      PSGD_CHECK(false, "qsgd: no AVX2 encoder for {} level bits", a.lbits);
  }
}

template <bool kAdd>
PSGD_TARGET_AVX2 std::uint32_t decode_codes_avx2(const DecodeArgs& a) {
  return decode_codes<kAdd>(a);
}

// One element of decode_codes, read straight from the bit stream (b ≤ 8: at most two bytes).
template <bool kAdd>
[[gnu::always_inline]] inline std::uint32_t decode_one(const DecodeArgs& a, std::size_t j,
                                                       float mult) {
  const unsigned b = a.lbits + 1;
  const std::size_t bit = j * b, off = bit / 8;
  const std::uint32_t lo = a.packed[off], hi = off + 1 < a.packed.size() ? a.packed[off + 1] : 0;
  const std::uint32_t code = ((lo | hi << 8) >> (bit % 8)) & ((1u << b) - 1);
  const std::uint32_t level = code & ((1u << a.lbits) - 1);
  const std::uint32_t neg = (code >> a.lbits) << 31;
  const float v = std::bit_cast<float>(
      std::bit_cast<std::uint32_t>(mult * static_cast<float>(static_cast<std::int32_t>(level))) ^
      neg);
  if constexpr (kAdd) {
    a.dst[j] += v;
  } else {
    a.dst[j] = v;
  }
  return level;
}

// decode_codes for up to 127 levels (b ≤ 8): each group of 8 codes is one 8-byte load, spread
// to 8 lanes by variable shifts. Elements before the first whole group of a bucket, after its
// last, and in the last bytes of the stream go one at a time.
template <bool kAdd>
PSGD_TARGET_AVX2 std::uint32_t decode_fast_avx2(const DecodeArgs& a) {
  const unsigned lbits = a.lbits, b = lbits + 1;
  const float inv_s = 1.0f / static_cast<float>(a.s);
  const std::size_t n = a.n, size = a.packed.size();
  const std::uint8_t* packed = a.packed.data();
  float* const dst = a.dst;
  // Groups whose 8-byte load stays inside the stream.
  const std::size_t safe_groups = size >= 8 ? (size - 8) / b + 1 : 0;
  const __m256i shift_q = _mm256_setr_epi64x(0, 2 * b, 4 * b, 6 * b);
  const __m256i shift_d = _mm256_setr_epi32(0, static_cast<int>(b), 0, static_cast<int>(b), 0,
                                            static_cast<int>(b), 0, static_cast<int>(b));
  const __m256i code_mask = _mm256_set1_epi32(static_cast<int>((1u << b) - 1));
  const __m256i level_mask = _mm256_set1_epi32(static_cast<int>((1u << lbits) - 1));
  const __m128i sign_shift = _mm_cvtsi32_si128(static_cast<int>(31 - lbits));
  const __m256i sign_mask = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  __m256i worst_v = _mm256_setzero_si256();
  std::uint32_t worst = 0;
  for (std::size_t i = 0; i < n;) {
    const std::uint64_t k = i / a.d;
    const std::size_t end = std::min<std::uint64_t>(n, (k + 1) * a.d);
    float norm;
    std::memcpy(&norm, a.norms.data() + 4 * k, 4);
    const float mult = a.weight * norm * inv_s;
    const __m256 mult_v = _mm256_set1_ps(mult);
    std::size_t j = i;
    for (; j < end && j % 8 != 0; ++j)
      worst = std::max(worst, decode_one<kAdd>(a, j, mult));
    for (; j + 8 <= end && j / 8 < safe_groups; j += 8) {
      std::uint64_t w;
      std::memcpy(&w, packed + (j / 8) * b, 8);
      __m256i q = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(w)), shift_q);
      q = _mm256_shuffle_epi32(q, _MM_SHUFFLE(2, 2, 0, 0));
      const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(q, shift_d), code_mask);
      const __m256i level = _mm256_and_si256(c, level_mask);
      worst_v = _mm256_max_epu32(worst_v, level);
      const __m256i neg = _mm256_and_si256(_mm256_sll_epi32(c, sign_shift), sign_mask);
      __m256 v = _mm256_castsi256_ps(_mm256_xor_si256(
          _mm256_castps_si256(_mm256_mul_ps(mult_v, _mm256_cvtepi32_ps(level))), neg));
      if constexpr (kAdd) v = _mm256_add_ps(_mm256_loadu_ps(dst + j), v);
      _mm256_storeu_ps(dst + j, v);
    }
    for (; j < end; ++j)
      worst = std::max(worst, decode_one<kAdd>(a, j, mult));
    i = end;
  }
  alignas(32) std::uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), worst_v);
  for (std::uint32_t l : lanes)
    worst = std::max(worst, l);
  return worst;
}
#endif

}  // namespace

QsgdCodec::QsgdCodec(QsgdOptions options) : options_(options), rng_(options.seed) {
  if (options_.levels < 1 || options_.levels > kMaxLevels) {
    throw ConfigError(fmt::format("--codec_levels {}: qsgd needs between 1 and {} levels",
                                  options_.levels, kMaxLevels));
  }
}

void QsgdCodec::encode_into(std::span<const float> values, Payload& p) {
  const std::uint64_t n = values.size();
  const auto s = static_cast<std::uint32_t>(options_.levels);
  const unsigned lbits = level_bits(s);
  const unsigned b = lbits + 1;
  const std::uint64_t buckets = bucket_count(n, options_.bucket);
  const std::uint64_t d = (options_.bucket == 0 || options_.bucket >= n) ? n : options_.bucket;
  const std::uint64_t code_bytes = (n * b + 7) / 8;
  const std::size_t header = 4 + 8 + 4 * buckets;

  p.num_elements = n;
  p.bytes.resize(header + code_bytes + 16);  // 16: slack for the packer's whole-word stores
  std::uint8_t* out = p.bytes.data();
  std::memcpy(out, &s, 4);
  std::memcpy(out + 4, &options_.bucket, 8);
  ++encodes_;

  const EncodeArgs args{.x = values.data(),
                        .n = n,
                        .d = d,
                        .norms = out + 12,
                        .s = s,
                        .lbits = lbits,
                        .key = rng_(),
                        .dst = out + header};
#ifdef PSGD_SIMD_X86
  if (simd::active() == simd::Isa::kAvx2 && lbits <= 7) {
    encode_codes_fast_avx2(args);
  } else if (simd::active() == simd::Isa::kAvx2) {
    encode_codes_avx2(args);
  } else {
    encode_codes_portable(args);
  }
#else
  encode_codes_portable(args);
#endif
  p.bytes.resize(header + code_bytes);
}

std::vector<std::uint8_t> QsgdCodec::state() const {
  std::vector<std::uint8_t> out;
  StateWriter(out).put<std::uint64_t>(encodes_);
  return out;
}

void QsgdCodec::restore_state(std::span<const std::uint8_t> state) {
  std::uint64_t encodes = 0;
  if (!state.empty()) {
    StateReader r(state, "qsgd codec state");
    encodes = r.get<std::uint64_t>();
    r.expect_end();
    // One key per encode: a count beyond 2^40 is not a run's, and discarding it would not end.
    if (encodes > (std::uint64_t{1} << 40)) r.fail("an impossible encode count");
  }
  rng_.seed(options_.seed);
  rng_.discard(encodes);
  encodes_ = encodes;
}

template <bool kAdd>
void QsgdCodec::decode_impl(const Payload& payload, std::span<float> acc, float weight) const {
  const std::uint64_t n = acc.size();
  check_element_count(payload, n, "qsgd");
  PayloadReader in(payload.view(), "qsgd");
  const auto s = in.read<std::uint32_t>();
  if (s < 1 || s > static_cast<std::uint32_t>(kMaxLevels)) {
    in.fail(fmt::format("{} levels (1..{} allowed)", s, kMaxLevels));
  }
  const auto bucket = in.read<std::uint64_t>();
  const std::uint64_t buckets = bucket_count(n, bucket);
  const std::uint64_t d = (bucket == 0 || bucket >= n) ? n : bucket;
  const unsigned lbits = level_bits(s);
  const unsigned b = lbits + 1;
  const std::uint64_t code_bytes = (n * b + 7) / 8;
  if (in.remaining() != 4 * buckets + code_bytes) {
    in.fail(fmt::format("{} elements in buckets of {} need {} bytes after the header, {} present",
                        n, d, 4 * buckets + code_bytes, in.remaining()));
  }
  auto norm_bytes = in.take(4 * buckets);
  auto packed = in.take(code_bytes);

  const DecodeArgs args{.packed = packed,
                        .norms = norm_bytes,
                        .n = n,
                        .d = d,
                        .s = s,
                        .lbits = lbits,
                        .weight = weight,
                        .dst = acc.data()};
#ifdef PSGD_SIMD_X86
  const std::uint32_t worst = simd::active() != simd::Isa::kAvx2 ? decode_codes_portable<kAdd>(args)
                              : lbits <= 7                       ? decode_fast_avx2<kAdd>(args)
                                                                 : decode_codes_avx2<kAdd>(args);
#else
  const std::uint32_t worst = decode_codes_portable<kAdd>(args);
#endif
  if (worst > s) in.fail(fmt::format("level {} exceeds the {} levels", worst, s));
}

void QsgdCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  decode_impl<true>(payload, acc, weight);
}

void QsgdCodec::decode(const Payload& payload, std::span<float> out) const {
  decode_impl<false>(payload, out, 1.0f);
}

}  // namespace psgd
