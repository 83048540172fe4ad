#include "codecs/codec.h"

#include <algorithm>

namespace psgd {

void Codec::decode(const Payload& payload, std::span<float> out) const {
  std::fill(out.begin(), out.end(), 0.0f);
  decode_add(payload, out, 1.0f);
}

}  // namespace psgd
