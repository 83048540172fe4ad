#include "network/frame.h"

#include <cstring>

#include "core/error.h"
#include "network/archive.h"
#include "network/messages/link.h"

namespace psgd {
namespace {

template <class T>
void put_le(std::uint8_t* out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

template <class T>
T get_le(const std::uint8_t* in) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<T>(in[i]) << (8 * i);
  return value;
}

}  // namespace

std::array<std::uint8_t, kFrameHeaderBytes> encode_header(const FrameHeader& header) {
  std::array<std::uint8_t, kFrameHeaderBytes> out{};
  put_le<std::uint32_t>(out.data(), kFrameMagic);
  put_le<std::uint16_t>(out.data() + 4, header.version);
  put_le<std::uint16_t>(out.data() + 6, static_cast<std::uint16_t>(header.type));
  put_le<std::uint64_t>(out.data() + 8, header.body_bytes);
  return out;
}

FrameHeader decode_header(std::span<const std::uint8_t, kFrameHeaderBytes> bytes,
                          std::uint64_t max_body_bytes) {
  const auto magic = get_le<std::uint32_t>(bytes.data());
  if (magic != kFrameMagic) {
    throw ProtocolError(fmt::format(
        "not a psgd peer: frame starts with 0x{:08x} instead of the \"PSGD\" magic", magic));
  }
  FrameHeader h;
  h.version = get_le<std::uint16_t>(bytes.data() + 4);
  const auto type = get_le<std::uint16_t>(bytes.data() + 6);
  h.body_bytes = get_le<std::uint64_t>(bytes.data() + 8);
  const bool is_error = type == static_cast<std::uint16_t>(MessageType::kError);
  if (h.version != kProtocolVersion && !is_error) {
    throw ProtocolError(fmt::format(
        "protocol version mismatch: the peer speaks psgd protocol v{} but this build speaks v{}; "
        "run the same psgd version on the server and every client",
        h.version, kProtocolVersion));
  }
  if (!known_type(type)) throw ProtocolError(fmt::format("unknown message type {}", type));
  h.type = static_cast<MessageType>(type);
  if (h.body_bytes > max_body_bytes) {
    throw ProtocolError(fmt::format("{} frame of {} bytes exceeds the limit of {} bytes",
                                    type_name(h.type), h.body_bytes, max_body_bytes));
  }
  return h;
}

namespace {

// Header + body of a message of either variant (the header's length is known once the body is).
template <class AnyMessage>
std::vector<std::uint8_t> frame_of(const AnyMessage& message) {
  std::vector<std::uint8_t> frame(kFrameHeaderBytes);
  append_body(message, frame);
  const auto header = encode_header({.version = kProtocolVersion,
                                     .type = type_of(message),
                                     .body_bytes = frame.size() - kFrameHeaderBytes});
  std::memcpy(frame.data(), header.data(), header.size());
  return frame;
}

}  // namespace

std::vector<std::uint8_t> encode_frame(const Message& message) {
  return frame_of(message);
}

std::vector<std::uint8_t> encode_frame(const LinkMessage& message) {
  return frame_of(message);
}

EncodedFrame::EncodedFrame(std::shared_ptr<const Message> message)
    : message_(std::move(message)), inline_(kFrameHeaderBytes), type_(type_of(*message_)) {
  std::vector<wire::Blob> blobs;
  append_body(*message_, inline_, &blobs);
  std::size_t blob_bytes = 0;
  for (const auto& b : blobs)
    blob_bytes += b.bytes.size();
  size_ = inline_.size() + blob_bytes;
  const auto header = encode_header({.version = kProtocolVersion,
                                     .type = type_of(*message_),
                                     .body_bytes = size_ - kFrameHeaderBytes});
  std::memcpy(inline_.data(), header.data(), header.size());
  std::size_t at = 0;
  const std::span<const std::uint8_t> all(inline_);
  for (const auto& b : blobs) {
    if (b.offset > at) segments_.push_back(all.subspan(at, b.offset - at));
    segments_.push_back(b.bytes);
    at = b.offset;
  }
  if (at < inline_.size()) segments_.push_back(all.subspan(at));
}

EncodedFrame::EncodedFrame(std::vector<std::uint8_t> frame)
    : inline_(std::move(frame)), size_(inline_.size()) {
  PSGD_CHECK(inline_.size() >= kFrameHeaderBytes, "a frame of {} bytes has no header",
             inline_.size());
  type_ = static_cast<MessageType>(get_le<std::uint16_t>(inline_.data() + 6));
  segments_.push_back(inline_);
}

std::vector<std::uint8_t> EncodedFrame::flatten() const {
  std::vector<std::uint8_t> out;
  out.reserve(size_);
  for (const auto& s : segments_)
    out.insert(out.end(), s.begin(), s.end());
  return out;
}

Message decode_frame(std::span<const std::uint8_t> bytes, std::uint64_t max_body_bytes) {
  if (bytes.size() < kFrameHeaderBytes) {
    throw ProtocolError(fmt::format("frame of {} bytes is shorter than its {}-byte header",
                                    bytes.size(), kFrameHeaderBytes));
  }
  const FrameHeader h = decode_header(bytes.first<kFrameHeaderBytes>(), max_body_bytes);
  if (bytes.size() - kFrameHeaderBytes != h.body_bytes) {
    throw ProtocolError(fmt::format("frame header announces {} body bytes but {} are present",
                                    h.body_bytes, bytes.size() - kFrameHeaderBytes));
  }
  return decode_body(h.type, bytes.subspan(kFrameHeaderBytes));
}

}  // namespace psgd
