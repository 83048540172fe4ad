#include "codecs/qsgd.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "codecs/kernels.h"
#include "codecs/payload_io.h"
#include "codecs/simd.h"
#include "core/error.h"

namespace psgd {
namespace {

constexpr std::size_t kChunk = 4096;  // elements quantised per step (a multiple of 8)

unsigned level_bits(std::uint32_t s) {
  return static_cast<unsigned>(std::bit_width(s));
}

// A 32-bit integer hash with good avalanche (the "lowbias32" constants of Wellons' hash
// prospector); keyed by multiplying the counter with an odd key so each encode gets its own
// permutation of uniforms.
[[gnu::always_inline]] inline std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

std::uint64_t bucket_count(std::uint64_t n, std::uint64_t bucket) {
  if (n == 0) return 0;
  if (bucket == 0 || bucket >= n) return 1;
  return n / bucket + (n % bucket != 0);
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

// Quantises x[0, m) with one bucket's scale s / ‖v‖ into codes; `first` is the global index of
// x[0].
[[gnu::always_inline]] inline void quantise(const float* x, std::size_t m, float scale,
                                            std::uint32_t s, unsigned lbits, std::uint32_t key_mul,
                                            std::uint32_t key_add, std::uint32_t first,
                                            std::uint16_t* codes) {
  const float fs = static_cast<float>(s);
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x[j]);
    const float a = std::fabs(x[j]) * scale;
    const float r = a < fs ? a : fs;  // also maps NaN to s, never to an undefined conversion
    std::uint32_t l = static_cast<std::uint32_t>(static_cast<std::int32_t>(r));
    const float frac = r - static_cast<float>(static_cast<std::int32_t>(l));
    const std::uint32_t h = mix32((first + static_cast<std::uint32_t>(j)) * key_mul + key_add);
    const float u = static_cast<float>(static_cast<std::int32_t>(h >> 8)) * 0x1p-24f;
    l += u < frac ? 1u : 0u;
    l = l < s ? l : s;
    codes[j] = static_cast<std::uint16_t>(l | ((bits >> 31) << lbits));
  }
}

struct EncodeArgs {
  const float* x;
  std::size_t n;
  std::uint64_t d;      // bucket size, 0 < d
  std::uint8_t* norms;  // where ‖bucket‖₂ goes, 4 bytes per bucket
  std::uint32_t s;
  unsigned lbits;
  std::uint32_t key_mul, key_add;
  std::uint8_t* dst;  // the packed codes, with 16 bytes of slack
};

// Computes the bucket norms, quantises and packs every element, in one pass over memory when
// buckets are small (each bucket's norm is taken when the quantiser reaches it, so its elements
// are still in cache for the second look). Compiled twice (portable and AVX2, codecs/simd.h).
[[gnu::always_inline]] inline void encode_codes(const EncodeArgs& a) {
  const unsigned b = a.lbits + 1;
  std::uint16_t codes[kChunk];
  std::uint8_t* dst = a.dst;
  std::uint64_t next_bucket = 0;  // the first bucket whose norm is not known yet
  float scale = 0;                // s / ‖v‖ of the current bucket
  for (std::size_t c = 0; c < a.n; c += kChunk) {
    const std::size_t m = std::min<std::size_t>(kChunk, a.n - c);
    // Split the chunk where buckets change, so each piece uses one scale.
    for (std::size_t i = c; i < c + m;) {
      const std::uint64_t k = i / a.d;
      if (k == next_bucket) {
        const std::size_t lo = k * a.d, len = std::min<std::uint64_t>(a.d, a.n - lo);
        const auto norm = static_cast<float>(std::sqrt(kernels::sum_squares({a.x + lo, len})));
        std::memcpy(a.norms + 4 * k, &norm, 4);
        const float sc = static_cast<float>(a.s) / norm;
        scale = (norm > 0 && std::isfinite(sc)) ? sc : 0.0f;
        ++next_bucket;
      }
      const std::size_t end = std::min<std::uint64_t>(c + m, (k + 1) * a.d);
      quantise(a.x + i, end - i, scale, a.s, a.lbits, a.key_mul, a.key_add,
               static_cast<std::uint32_t>(i), codes + (i - c));
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

template <bool kAdd>
PSGD_TARGET_AVX2 std::uint32_t decode_codes_avx2(const DecodeArgs& a) {
  return decode_codes<kAdd>(a);
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

  const std::uint64_t key = rng_();
  const auto key_mul = static_cast<std::uint32_t>(key) | 1u;
  const auto key_add = static_cast<std::uint32_t>(key >> 32);
  const EncodeArgs args{.x = values.data(),
                        .n = n,
                        .d = d,
                        .norms = out + 12,
                        .s = s,
                        .lbits = lbits,
                        .key_mul = key_mul,
                        .key_add = key_add,
                        .dst = out + header};
#ifdef PSGD_SIMD_X86
  if (simd::active() == simd::Isa::kAvx2) {
    encode_codes_avx2(args);
  } else {
    encode_codes_portable(args);
  }
#else
  encode_codes_portable(args);
#endif
  p.bytes.resize(header + code_bytes);
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
  const std::uint32_t worst = simd::active() == simd::Isa::kAvx2
                                  ? decode_codes_avx2<kAdd>(args)
                                  : decode_codes_portable<kAdd>(args);
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
