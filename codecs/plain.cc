#include "codecs/plain.h"

#include <bit>
#include <cstring>

#include "core/error.h"

namespace psgd {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; big-endian hosts need byte swapping here");

namespace {

void check_payload(const Payload& payload, std::size_t expected) {
  if (payload.num_elements != expected) {
    throw ProtocolError(fmt::format("plain payload holds {} elements but {} were expected",
                                    payload.num_elements, expected));
  }
  if (payload.size_bytes() != expected * sizeof(float)) {
    throw ProtocolError(fmt::format("plain payload of {} elements has {} bytes instead of {}",
                                    expected, payload.size_bytes(), expected * sizeof(float)));
  }
}

}  // namespace

Payload PlainCodec::encode(std::span<const float> values) {
  Payload p;
  p.num_elements = values.size();
  // assign() from a byte range copies once; resize() + memcpy would also zero-fill first.
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(values.data());
  p.bytes.assign(bytes, bytes + values.size_bytes());
  return p;
}

void PlainCodec::decode_add(const Payload& payload, std::span<float> acc, float weight) const {
  check_payload(payload, acc.size());
  const auto* src = payload.view().data();
  const std::size_t n = acc.size();
  float* dst = acc.data();
  // memcpy per element keeps this free of alignment and aliasing assumptions; compilers turn it
  // into a plain vector load.
  for (std::size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, src + i * sizeof(float), sizeof(float));
    dst[i] += weight * v;
  }
}

void PlainCodec::decode(const Payload& payload, std::span<float> out) const {
  check_payload(payload, out.size());
  if (!out.empty()) std::memcpy(out.data(), payload.view().data(), out.size_bytes());
}

}  // namespace psgd
