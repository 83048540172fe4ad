// libFuzzer: one frame (header + body) as read from a socket, through the same decoder the TCP
// connection uses. A malformed frame must end in ProtocolError, never in a crash, a leak, an
// out-of-bounds access or an allocation the frame limit does not allow.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "network/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const psgd::Message m = psgd::decode_frame({data, size}, 1 << 20);
    // Whatever decodes must encode again.
    (void)psgd::encode_frame(m);
  } catch (const psgd::ProtocolError&) {
  }
  return 0;
}
