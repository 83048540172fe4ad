#pragma once
// One framed TCP link to a peer, after Asio's connection pattern (STYLE.md §6): the Connection
// owns its socket, lives in a shared_ptr, and every handler holds `self` so it outlives its I/O.
//
// Threading: everything runs on the io_context's single thread. send() and close() must be called
// on that thread too (post() to it from elsewhere).
//
// Reading: after start(), frames are read one after another and handed to the FrameHandler. Every
// read has a deadline (read_timeout): a peer that goes silent mid-frame or between frames longer
// than that is dropped with an error. A header is validated before its body is read, against
// max_body_bytes, so an oversized or garbage frame never causes an allocation.
//
// Filtering: with set_type_filter(), a frame whose header names a type the filter refuses is an
// error before its body is read, so nothing an unauthenticated peer sends beyond the handshake
// is ever decoded.
//
// Liveness: after start_heartbeats(interval), a Heartbeat frame goes out whenever nothing else
// has been written for `interval` seconds (checked every interval, so frames are at most about
// 1.9 intervals apart; network/liveness.h picks an interval from the peer's read timeout);
// received Heartbeats are consumed here (they only
// refresh the read deadline). A deadline that expires while bytes wait unread in the socket
// (this process was busy, not the peer silent) is extended instead of failing.
//
// Shared memory: offer_shared_memory() proposes a shared-memory side channel (shm_channel.h); a
// peer on the same machine that allows it (accept_shared_memory) maps it, and from then on frame
// bodies of at least kShmMinBody bytes travel through it while the socket carries a small notice.
// Both ends keep working over TCP alone when the peer is elsewhere, refuses, or all slots are
// busy. The handler sees the same messages either way.
//
// The link messages behind both (network/messages/link.h: Heartbeat, ShmOffer, ShmReply,
// ShmFrame) are the connection's own: it sends and consumes them, and they are not alternatives
// of Message, so the FrameHandler never sees one and send() cannot send one.
//
// Errors: the ErrorHandler is called at most once, with a sentence saying what happened (peer
// closed, timeout, malformed frame); the socket is then closed. A handler that throws
// psgd::Error makes the connection report that error and close.
#include <asio.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "network/frame.h"
#include "network/messages.h"
#include "network/tcp/shm_channel.h"

namespace psgd::net {

struct ConnectionOptions {
  std::uint64_t max_body_bytes = 1 << 20;  // until the job says how big a model is
  double read_timeout_s = 120;             // longest silence (no byte at all) tolerated while
                                           // expecting a frame; a slow frame is not silence
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using FrameHandler = std::function<void(Message&& message, std::size_t frame_bytes)>;
  using ErrorHandler = std::function<void(const std::string& why)>;

  Connection(asio::ip::tcp::socket socket, ConnectionOptions options);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start(FrameHandler on_frame, ErrorHandler on_error);

  // Queues one frame; frames go out in the order queued, each with one gather write that reads
  // large arrays straight from the message. A shared frame can be queued on many connections
  // without copying (a broadcast).
  void send(const Message& message);
  void send(std::shared_ptr<const Message> message);
  void send_frame(std::shared_ptr<const EncodedFrame> frame);

  // Once every queued frame has been written: half-closes (the peer reads them all, then
  // end-of-stream), discards what the peer still sends until it closes, at most kDrainSeconds,
  // then closes. No handler is called once draining.
  void close_after_writes();
  static constexpr double kDrainSeconds = 5;
  // Closes now; pending writes are dropped. No handler is called afterwards.
  void close();

  void set_max_body_bytes(std::uint64_t n) { options_.max_body_bytes = n; }
  void set_read_timeout(double seconds) { options_.read_timeout_s = seconds; }
  using TypeFilter = std::function<bool(MessageType)>;
  void set_type_filter(TypeFilter filter) { filter_ = std::move(filter); }
  void start_heartbeats(double interval_s);

  // Bodies smaller than this go over the socket even with shared memory: copying them through a
  // slot saves nothing.
  static constexpr std::size_t kShmMinBody = 64 * 1024;
  // Creates a segment of `slots` slots of `slot_bytes` per direction and offers it to the peer;
  // returns false (and stays on TCP) when this machine cannot provide one. Call once, after the
  // peer authenticated.
  bool offer_shared_memory(std::size_t slot_bytes, std::uint32_t slots = 3);
  // Whether a ShmOffer from the peer is taken up (default: declined).
  void accept_shared_memory(bool yes) { shm_accept_ = yes; }
  // Whether both ends of the socket have the same address (the peer runs on this machine, or
  // says so convincingly enough to be offered shared memory, which only opens if it does).
  bool peer_on_this_host() const;
  // This end's address (the interface the link goes through); empty once closed.
  std::string local_address() const;
  // Whether frames travel through shared memory on this link (both ends agreed).
  bool shared_memory() const { return shm_ != nullptr; }
  // Frames whose body went through shared memory (the rest went over the socket).
  std::uint64_t frames_via_shared_memory() const { return shm_frames_; }

  bool is_open() const { return socket_.is_open() && !closed_; }
  // Frames queued or being written.
  bool writes_pending() const { return writing_ || !writes_.empty(); }
  const std::string& peer() const { return peer_; }
  // Bytes of the frames sent and received, whether their bodies went over the socket or through
  // shared memory.
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  std::uint64_t bytes_received() const { return bytes_received_; }

 private:
  void read_header();
  void read_body(const FrameHeader& header);
  void arm_deadline();
  void write_next();
  void drain();
  void fail(const std::string& why);
  // The read deadline: fails the link after read_timeout_s without a byte (arm_deadline starts
  // the count; noting_progress() is the reads' completion condition that restarts it).
  void wait_for_silence(asio::steady_timer::time_point at);
  std::function<std::size_t(const std::error_code&, std::size_t)> noting_progress();
  void arm_heartbeat();
  struct PendingWrite;
  // Replaces a large frame by a ShmFrame notice once its body is copied into a free slot.
  void move_body_to_shared_memory(PendingWrite& w);
  // Decodes and handles a link message (network/messages/link.h): one on_link per type.
  void on_link_frame(MessageType type);
  void on_link(const Heartbeat& heartbeat);
  void on_link(const ShmOffer& offer);
  void on_link(const ShmReply& reply);
  void on_link(const ShmFrame& notice);

  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;
  asio::steady_timer::time_point last_progress_;
  asio::steady_timer heartbeat_;
  double heartbeat_s_ = 0;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
  TypeFilter filter_;
  ConnectionOptions options_;
  std::string peer_;
  FrameHandler on_frame_;
  ErrorHandler on_error_;
  std::array<std::uint8_t, kFrameHeaderBytes> header_{};
  // Frame bodies. Decoded messages view (and hold) them; a buffer nobody else holds any more is
  // read into again. Several are kept, so a handler that holds frames a while (a ring forwarding
  // what it received) does not cost an allocation per frame. Not zero-filled: every byte a
  // message can see was read from the socket.
  template <class T>
  struct NoInit : std::allocator<T> {
    template <class U>
    struct rebind {
      using other = NoInit<U>;
    };
    template <class U>
    void construct(U* p) noexcept {
      ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  };
  using Body = std::vector<std::uint8_t, NoInit<std::uint8_t>>;
  static constexpr std::size_t kSpareBodies = 8;
  static constexpr std::size_t kSpareBodyBytes = 64 << 20;  // beyond the first one
  std::shared_ptr<Body> next_body(std::size_t bytes);
  std::vector<std::shared_ptr<Body>> bodies_;
  std::shared_ptr<Body> body_;
  struct PendingWrite {
    std::shared_ptr<const EncodedFrame> frame;
    std::size_t counted_bytes;  // the frame's full size, also when a notice stands for it
    bool shm_allowed;           // queued after shared memory was agreed
  };
  std::deque<PendingWrite> writes_;
  std::vector<asio::const_buffer> gather_;
  bool writing_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool closed_ = false;
  std::uint64_t bytes_sent_ = 0;
  std::uint64_t bytes_received_ = 0;
  std::shared_ptr<ShmChannel> shm_;          // agreed by both ends
  std::shared_ptr<ShmChannel> shm_offered_;  // offered, no reply yet
  bool shm_accept_ = false;
  std::uint64_t shm_frames_ = 0;
};

// Connects to host:port, retrying refused or unreachable attempts with a backoff that doubles from
// 100 ms up to 2 s, with jitter (network/backoff.h), until `timeout_s` has passed (the server may
// still be starting). Runs `io` until connected; throws IoError saying
// where it tried and what the last failure was.
asio::ip::tcp::socket dial(asio::io_context& io, const std::string& host, int port,
                           double timeout_s);

}  // namespace psgd::net
