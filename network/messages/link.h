#pragma once
// Link messages: between the two ends of one TCP link, sent and handled by net::Connection
// (network/tcp/connection.cc) alone. They are not alternatives of Message, so a server, a client
// or a role can neither receive nor send one. Besides the connection, only the encoder
// (network/messages.cc, frame.cc), its tests and the fuzz targets include this header.
//   Heartbeat either way on an idle link.
//   ShmOffer -> ShmReply, then ShmFrame notices in place of frames whose body went through a
//   shared-memory slot.
// Their wire ids are in the message list (network/messages.h) and their layouts in
// network/messages.cc, with all the others.
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "network/messages.h"

namespace psgd {

// Either way, on a link that has carried nothing for --heartbeat_interval seconds. Only refreshes
// the receiver's read deadline.
struct Heartbeat {};

// Shared memory between the two ends of a link on one machine (network/tcp/shm_channel.h).
//
// Either way: a segment `name` with `slots` slots of `slot_bytes` per direction, for the peer to
// open if it runs on the same machine.
struct ShmOffer {
  std::string name;
  std::uint64_t slot_bytes = 0;
  std::uint32_t slots = 0;
};

// The answer to a ShmOffer: whether the peer mapped the segment, and if not, why.
struct ShmReply {
  bool accepted = false;
  std::string why;
};

// In place of a frame whose body was copied into shared-memory slot `slot`: the body's type and
// length. The receiver decodes the body where it lies.
struct ShmFrame {
  std::uint32_t slot = 0;
  std::uint16_t type = 0;
  std::uint64_t body_bytes = 0;
};

using LinkMessage = detail::VariantOf<LinkMessageTypes>::type;

// The same functions as for Message (network/messages.h, network/frame.h).
MessageType type_of(const LinkMessage& message);
std::vector<std::uint8_t> encode_body(const LinkMessage& message);
void append_body(const LinkMessage& message, std::vector<std::uint8_t>& out);
std::size_t body_size(const LinkMessage& message);
// Header + body, ready to write (defined in network/frame.cc).
std::vector<std::uint8_t> encode_frame(const LinkMessage& message);
// Throws ProtocolError for a malformed body or a type that is not a link message.
LinkMessage decode_link_body(MessageType type, std::span<const std::uint8_t> body);

}  // namespace psgd
