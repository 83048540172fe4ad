#pragma once
// A shared-memory side channel for a Connection whose two ends run on the same machine.
//
// Over loopback TCP a model-sized frame is copied into the kernel by the sender, copied out by the
// receiver, and delivered in several partial reads, each a wake-up. When the server and a worker
// share a host, the Connection instead copies the frame's body once into a slot of a POSIX
// shared-memory segment and sends only a small ShmFrame (slot, type, length) over the socket. The
// receiver decodes the body where it lies: the payload views the slot, and the slot returns to
// the sender when the last message viewing it is released. The socket still carries every frame
// notice, so frames keep their order, deadlines and heartbeats work as before, and a dead peer is
// seen as before.
//
// Negotiation (Connection::offer_shared_memory): one end creates the segment under a random name
// and sends ShmOffer; the other end opens it, which succeeds only on the same machine, and answers
// ShmReply. Both ends unlink the name as soon as the reply is sent or read, so nothing is left in
// /dev/shm once the link is up; only a process killed between offer and reply leaves a
// `/dev/shm/psgd-<pid>-<random>` file behind. Any failure (no /dev/shm, no room, another machine)
// leaves the link on TCP alone.
//
// Layout of the segment: a header (magic, version, slot count, slot size), then one state word
// per slot and direction (each on its own cache line), then the slots. Direction 0 carries frames
// from the creator to the opener, direction 1 the other way. A slot is free, full (written by its
// sender, not yet taken) or taken (its receiver decodes or holds it); only the sender moves it from
// free to full and only the receiver from full to taken and back to free.
//
// Trust: both processes map the segment writable, so this is only for peers that authenticated
// on the link (the server offers after the handshake). The receiver checks the slot number, the
// size and the slot's state before it reads, exactly as it checks a TCP frame's header.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace psgd::net {

// A slot size with room for a frame carrying `values` fp32 values and its other fields (a plain
// gradient, the parameters): the size both programs offer for their links.
inline std::size_t fp32_frame_slot_bytes(std::size_t values) {
  return 4 * values + 64 * 1024;
}

class ShmChannel : public std::enable_shared_from_this<ShmChannel> {
 public:
  static constexpr std::uint32_t kMaxSlots = 16;

  // Creates a segment with `slots` slots of `slot_bytes` (rounded up to a page) per direction,
  // with its memory reserved now (so a full /dev/shm is an error here, not a crash later).
  // Throws IoError naming the cause.
  static std::shared_ptr<ShmChannel> create(std::size_t slot_bytes, std::uint32_t slots);
  // Opens the segment another process created and offered with these parameters. Throws IoError
  // when it does not exist here (another machine) or does not match the offer.
  static std::shared_ptr<ShmChannel> open(const std::string& name, std::size_t slot_bytes,
                                          std::uint32_t slots);

  ShmChannel(const ShmChannel&) = delete;
  ShmChannel& operator=(const ShmChannel&) = delete;
  ~ShmChannel();

  const std::string& name() const { return name_; }
  std::size_t slot_bytes() const { return slot_bytes_; }
  std::uint32_t slots() const { return slots_; }
  // Removes the name from /dev/shm; the mapping stays. Idempotent.
  void unlink();

  // Copies `parts` (in order, together at most slot_bytes()) into a free outgoing slot and marks
  // it full. Returns the slot, or nothing when every slot is still held by the receiver.
  std::optional<std::uint32_t> put(std::span<const std::span<const std::uint8_t>> parts);

  // The incoming slot `slot`, holding `bytes` bytes, marked taken. The slot is freed for the
  // sender when the returned owner (and every copy of it) is destroyed, from any thread. Throws
  // ProtocolError for a slot number out of range, a size over slot_bytes() or a slot its sender
  // has not filled.
  std::pair<std::span<const std::uint8_t>, std::shared_ptr<const void>> take(std::uint32_t slot,
                                                                             std::size_t bytes);

  // Outgoing slots currently held by the receiver (for tests).
  std::uint32_t slots_in_use() const;

 private:
  ShmChannel(std::string name, bool creator, void* base, std::size_t mapped, std::size_t slot_bytes,
             std::uint32_t slots);
  std::atomic<std::uint32_t>& state(int direction, std::uint32_t slot) const;
  std::uint8_t* data(int direction, std::uint32_t slot) const;

  std::string name_;
  bool creator_;
  bool unlinked_ = false;
  std::uint8_t* base_;
  std::size_t mapped_;
  std::size_t slot_bytes_;
  std::uint32_t slots_;
  int send_dir_;  // 0 for the creator, 1 for the opener
  std::uint32_t next_ = 0;
};

}  // namespace psgd::net
