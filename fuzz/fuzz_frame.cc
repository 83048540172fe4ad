// libFuzzer: one frame (header + body) as read from a socket, through the decoders the TCP
// connection uses (a link message's body through decode_link_body, any other through
// decode_body). A malformed frame must end in ProtocolError, never in a crash, a leak, an
// out-of-bounds access or an allocation the frame limit does not allow.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.h"
#include "network/frame.h"
#include "network/messages/link.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint64_t kLimit = 1 << 20;
  const std::span<const std::uint8_t> bytes(data, size);
  try {
    if (size >= psgd::kFrameHeaderBytes) {
      const auto h = psgd::decode_header(bytes.first<psgd::kFrameHeaderBytes>(), kLimit);
      if (psgd::is_link(h.type) && h.body_bytes == size - psgd::kFrameHeaderBytes) {
        const auto m = psgd::decode_link_body(h.type, bytes.subspan(psgd::kFrameHeaderBytes));
        if (psgd::encode_frame(m).size() != size) std::abort();
        return 0;
      }
    }
    const psgd::Message m = psgd::decode_frame(bytes, kLimit);
    // Whatever decodes must encode again, to a frame of the same size, which frame_size() counts.
    if (psgd::encode_frame(m).size() != size || psgd::frame_size(m) != size) std::abort();
  } catch (const psgd::ProtocolError&) {
  }
  return 0;
}
