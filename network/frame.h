#pragma once
// Frames: how messages are delimited on a byte stream.
//
//   offset  size  field
//   0       4     magic "PSGD" (0x50 0x53 0x47 0x44)
//   4       2     protocol version (little-endian)
//   6       2     message type (MessageType)
//   8       8     body length in bytes (little-endian)
//   16      n     body
//
// The header is checked before the body is read or any memory is allocated for it: a wrong magic
// means the peer is not psgd, a different version is refused with a message naming both versions,
// and a body longer than the receiver's limit (derived from the job's model size) is refused.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "network/messages.h"

namespace psgd {

inline constexpr std::size_t kFrameHeaderBytes = 16;

// The largest frame body either side of a training link accepts once the model is known. The
// biggest messages are not gradients (at most twice fp32) but a worker's whole state (WorkerState
// for a checkpoint, RingHalted and RingReform when an allreduce ring shrinks): its parameters and
// buffers, up to three optimiser slots per parameter (Adam with amsgrad, centred RMSprop with
// momentum), an error-feedback residual and worker-side momentum, 4 B each: 24 B per value.
// 32 B leaves headroom for the snapshot's framing; the limit guards against absurd sizes only.
inline std::uint64_t training_frame_limit(std::size_t num_parameters) {
  return 32 * static_cast<std::uint64_t>(num_parameters) + (1 << 20);
}
inline constexpr std::uint32_t kFrameMagic = 0x44475350;  // "PSGD" read as little-endian

struct FrameHeader {
  std::uint16_t version = kProtocolVersion;
  MessageType type = MessageType::kError;
  std::uint64_t body_bytes = 0;
};

std::array<std::uint8_t, kFrameHeaderBytes> encode_header(const FrameHeader& header);

// Throws ProtocolError (bad magic, other version, unknown type, body over max_body_bytes).
// An ErrorMessage of another version is accepted so that its text can be shown.
FrameHeader decode_header(std::span<const std::uint8_t, kFrameHeaderBytes> bytes,
                          std::uint64_t max_body_bytes);

// Header + body of one message, ready to write.
std::vector<std::uint8_t> encode_frame(const Message& message);

// encode_frame(message).size(), counted without building the frame: the message's arrays are
// neither copied nor read, and nothing is allocated. For counting traffic where the frame itself
// is not needed (the broadcast and ccdc roles' multicast bytes).
inline std::size_t frame_size(const Message& message) {
  return kFrameHeaderBytes + body_size(message);
}

// The same bytes as encode_frame(), as a list of segments that reference the message's large
// arrays instead of copying them: written with one gather write. Holds the message alive (or,
// built from bytes, holds the bytes).
class EncodedFrame {
 public:
  explicit EncodedFrame(std::shared_ptr<const Message> message);
  // A frame encoded already, header and body in one buffer (a link message; a test's forgery).
  explicit EncodedFrame(std::vector<std::uint8_t> frame);

  MessageType type() const { return type_; }
  std::size_t size() const { return size_; }
  // The message itself, for transports that deliver in this process (no decoding); null for a
  // frame built from bytes.
  const std::shared_ptr<const Message>& message() const { return message_; }
  const std::vector<std::span<const std::uint8_t>>& segments() const { return segments_; }
  std::vector<std::uint8_t> flatten() const;

 private:
  std::shared_ptr<const Message> message_;
  std::vector<std::uint8_t> inline_;
  std::vector<std::span<const std::uint8_t>> segments_;
  std::size_t size_ = 0;
  MessageType type_ = MessageType::kError;
};

// Decodes one complete frame held in memory (used by tests and fuzzers); `bytes` must hold exactly
// one frame.
Message decode_frame(std::span<const std::uint8_t> bytes, std::uint64_t max_body_bytes);

}  // namespace psgd
