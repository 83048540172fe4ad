#pragma once
// fp16: IEEE 754-2008 binary16 ("half precision") casts of every element, as in mixed-precision
// training (Micikevicius et al. 2018, "Mixed Precision Training") and the fp16 compression of
// Horovod / BytePS. Round-to-nearest-even; overflow becomes ±inf, NaN stays NaN (quiet, the
// top of its payload kept, as x86's F16C does), values below 2^-14 become binary16 subnormals
// (or ±0), exactly as an IEEE conversion would.
//
// Wire format (Payload.bytes): num_elements little-endian uint16 binary16 values, nothing else
// (2 bytes per element).
//
// The conversions below are portable bit manipulation written so the compiler can vectorise them;
// the codec uses F16C instructions instead when the CPU has them (codecs/simd.h), with
// bit-identical results, NaNs included.
#include <bit>
#include <cstdint>

#include "codecs/codec.h"

namespace psgd {

namespace half_detail {
// Branch-free select: the vectoriser turns masks into blends where it would keep `c ? a : b` as
// control flow.
inline std::uint32_t select(bool c, std::uint32_t a, std::uint32_t b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return (a & m) | (b & ~m);
}
}  // namespace half_detail

// fp32 -> binary16 bits, round to nearest even.
inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t a = x & 0x7fffffffu;
  // Normal results: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to
  // nearest even; a carry out of the mantissa correctly bumps the exponent (up to inf).
  const std::uint32_t normal = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  // Subnormal results (|f| < 2^-14): adding 0.5f lines the binary16 subnormal's 10 bits up with
  // the bottom of the fp32 mantissa, and the FPU's own round-to-nearest-even does the rounding.
  const std::uint32_t sub = std::bit_cast<std::uint32_t>(std::bit_cast<float>(a) + 0.5f) -
                            std::bit_cast<std::uint32_t>(0.5f);
  // inf (or overflow); NaN: quiet bit set, the top 9 payload bits kept.
  const std::uint32_t special =
      0x7c00u | half_detail::select(a > 0x7f800000u, 0x200u | ((a >> 13) & 0x3ffu), 0u);
  const std::uint32_t r = half_detail::select(a >= 0x47800000u, special,
                                              half_detail::select(a < 0x38800000u, sub, normal));
  return static_cast<std::uint16_t>(sign | r);
}

// binary16 bits -> fp32 (exact).
inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  const std::uint32_t exp = em & 0x7c00u;
  const std::uint32_t normal = (em << 13) + (112u << 23);
  // Exponent 31 -> 255; a NaN comes out quiet.
  const std::uint32_t special = ((em << 13) + (224u << 23)) | ((em > 0x7c00u) << 22);
  // Subnormal and zero: em * 2^-24 is exact in fp32.
  const std::uint32_t sub =
      std::bit_cast<std::uint32_t>(static_cast<float>(static_cast<std::int32_t>(em)) * 0x1p-24f);
  const std::uint32_t r =
      half_detail::select(exp == 0x7c00u, special, half_detail::select(exp == 0, sub, normal));
  return std::bit_cast<float>(sign | r);
}

class Fp16Codec final : public Codec {
 public:
  std::string_view name() const override { return "fp16"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
};

}  // namespace psgd
