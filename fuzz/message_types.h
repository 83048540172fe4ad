#pragma once
// The message types fuzz_message chooses from with its first input byte: every entry of the
// message list (network/messages.h), in list order. make_seeds writes each seed's selector as the
// index of its type here, so both use this one table.
#include <array>
#include <cstdint>

#include "network/messages.h"

namespace psgd::fuzz {

inline constexpr auto kMessageTypes = [] {
  std::array<MessageType, kMessageInfos.size()> types{};
  for (std::size_t i = 0; i < types.size(); ++i)
    types[i] = kMessageInfos[i].type;
  return types;
}();

// The selector byte that makes fuzz_message decode a body of `type`.
constexpr std::uint8_t selector_of(MessageType type) {
  for (std::size_t i = 0; i < kMessageTypes.size(); ++i)
    if (kMessageTypes[i] == type) return static_cast<std::uint8_t>(i);
  return 0;
}
static_assert(kMessageTypes.size() <= 256, "one selector byte");

}  // namespace psgd::fuzz
