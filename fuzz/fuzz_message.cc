// libFuzzer: every message body decoder (network/messages.h, network/messages/link.h). The first
// input byte picks the message type; the rest is the body. Anything that decodes is encoded and
// decoded again and must give the same bytes the second time (the encoding of a decoded message is
// canonical), and its counted size must be the size of its encoding.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "fuzz/message_types.h"
#include "network/messages.h"
#include "network/messages/link.h"

namespace {

template <class Decode>
void round_trip(psgd::MessageType type, std::span<const std::uint8_t> body, Decode decode) {
  const auto m = decode(type, body);
  if (psgd::type_of(m) != type) std::abort();
  const auto once = psgd::encode_body(m);
  if (psgd::body_size(m) != once.size()) std::abort();
  const auto twice = psgd::encode_body(decode(type, once));
  if (once != twice) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr const auto& kTypes = psgd::fuzz::kMessageTypes;
  if (size == 0) return 0;
  const auto type = kTypes[data[0] % kTypes.size()];
  const std::span<const std::uint8_t> body(data + 1, size - 1);
  try {
    if (psgd::is_link(type)) {
      round_trip(type, body, [](auto t, auto b) { return psgd::decode_link_body(t, b); });
    } else {
      round_trip(type, body, [](auto t, auto b) { return psgd::decode_body(t, b); });
    }
  } catch (const psgd::ProtocolError&) {
  }
  return 0;
}
