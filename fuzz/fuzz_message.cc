// libFuzzer: every message body decoder (network/messages.h). The first input byte picks the
// message type; the rest is the body. Anything that decodes is encoded and decoded again and must
// give the same bytes the second time (the encoding of a decoded message is canonical).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "fuzz/message_types.h"
#include "network/messages.h"

constexpr const auto& kTypes = psgd::fuzz::kMessageTypes;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto type = kTypes[data[0] % kTypes.size()];
  try {
    const psgd::Message m = psgd::decode_body(type, {data + 1, size - 1});
    if (psgd::type_of(m) != type) std::abort();
    const auto once = psgd::encode_body(m);
    const auto twice = psgd::encode_body(psgd::decode_body(type, once));
    if (once != twice) std::abort();
  } catch (const psgd::ProtocolError&) {
  }
  return 0;
}
