#pragma once
// plain: IEEE-754 fp32, little-endian, exact. The baseline every other codec is compared to.
#include "codecs/codec.h"

namespace psgd {

class PlainCodec final : public Codec {
 public:
  std::string_view name() const override { return "plain"; }
  void encode_into(std::span<const float> values, Payload& out) override;
  void decode_add(const Payload& payload, std::span<float> acc, float weight) const override;
  void decode(const Payload& payload, std::span<float> out) const override;
  std::span<const float> view_decoded(const Payload& payload,
                                      std::size_t num_elements) const override;
  CodecStats last_stats() const override { return {.compression_error = 0}; }  // exact
};

}  // namespace psgd
