#pragma once
// Link messages: between the two ends of one TCP link, handled inside net::Connection
// (network/tcp/connection.h); the link's owner never sees them.
//   Heartbeat either way on an idle link.
//   ShmOffer -> ShmReply, then ShmFrame notices in place of frames whose body went through a
//   shared-memory slot.
#include <cstdint>
#include <string>

#ifndef PSGD_MESSAGE_TYPES
#error "include network/messages.h, of which this header is a part"
#endif

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

}  // namespace psgd
