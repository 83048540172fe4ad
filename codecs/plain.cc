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

void PlainCodec::encode_into(std::span<const float> values, Payload& out) {
  out.num_elements = values.size();
  // assign() from a byte range copies once, into the existing capacity when there is enough;
  // resize() + memcpy would also zero-fill a fresh buffer first.
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(values.data());
  out.bytes.assign(bytes, bytes + values.size_bytes());
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

std::span<const float> PlainCodec::view_decoded(const Payload& payload,
                                                std::size_t num_elements) const {
  check_payload(payload, num_elements);
  const auto bytes = payload.view();
  if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(float) != 0) return {};
  return {reinterpret_cast<const float*>(bytes.data()), num_elements};
}

}  // namespace psgd
