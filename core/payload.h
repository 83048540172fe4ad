#pragma once
// Payload: an encoded vector of floats as it travels on the wire, shared by the codecs that write
// and read it (codecs/codec.h) and the messages that carry it (network/messages.h), neither of
// which depends on the other.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace psgd {

// An encoded vector: the element count it decodes to and the codec-specific bytes.
//
// An encoder writes `bytes`. A payload decoded from a received frame does not copy the frame: its
// bytes are a view into the frame's buffer, which `frame` keeps alive for as long as the payload
// lives (network/messages.cc). Readers use view(), which covers both.
struct Payload {
  std::uint64_t num_elements = 0;
  std::vector<std::uint8_t> bytes;
  std::span<const std::uint8_t> received;
  std::shared_ptr<const void> frame;

  std::span<const std::uint8_t> view() const {
    return frame ? received : std::span<const std::uint8_t>(bytes);
  }
  std::size_t size_bytes() const { return view().size(); }
};

}  // namespace psgd
