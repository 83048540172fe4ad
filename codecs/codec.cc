#include "codecs/codec.h"

#include <algorithm>

#include "core/error.h"

namespace psgd {

void Codec::decode(const Payload& payload, std::span<float> out) const {
  std::fill(out.begin(), out.end(), 0.0f);
  decode_add(payload, out, 1.0f);
}

void Codec::restore_state(std::span<const std::uint8_t> state) {
  if (!state.empty()) {
    throw ProtocolError(fmt::format("the {} codec keeps no state, but {} bytes of it were given",
                                    name(), state.size()));
  }
}

}  // namespace psgd
