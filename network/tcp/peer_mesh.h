#pragma once
// A full mesh of framed TCP links between the n workers of a job (one Connection per pair, the
// same framing as the server link), for peer-to-peer strategies.
//
// Rendezvous: every rank first listen()s on a port (0: any free one) and reports it to whoever
// orchestrates (the server's PeerTable; a test's shared vector). connect() then dials every lower
// rank — its listener already exists, so a blocking connect completes at once — and accepts the
// higher ranks. The first frame on a link is PeerHello, naming the caller; when all n-1 links are
// identified, on_ready runs. Because listeners open before addresses are handed out, a refused
// connection means the peer has gone and fails at once; other failures are retried until
// connect_timeout_s.
//
// Authentication: with set_key() (the job's peer key from the server's PeerTable) every caller
// proves in its PeerHello that it is a worker of this job (network/auth.h, peer_proof); the
// callee drops a caller with a wrong or replayed proof, a wrong rank or a duplicate, logs it and
// keeps waiting for the real peer, so a stranger on a listener cannot break the job. Without a
// key (in-process tests and benchmarks) PeerHello carries no proof and none is asked for.
//
// Threading: everything runs on the io_context's thread; send() and close() must be called there.
// Errors: on_error(peer, why) is called for the first failure of a link (peer closed, timeout,
// malformed frame); the caller decides what that means, normally
// that the job cannot continue. After close() no handler is called.
#include <asio.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "network/tcp/connection.h"

namespace psgd::net {

struct PeerAddress {
  std::string host;
  int port = 0;
};

class PeerMesh {
 public:
  using FrameHandler = std::function<void(int from, Message&& message)>;
  using ErrorHandler = std::function<void(int peer, const std::string& why)>;

  PeerMesh(asio::io_context& io, int rank, int world, ConnectionOptions options);
  ~PeerMesh();
  PeerMesh(const PeerMesh&) = delete;
  PeerMesh& operator=(const PeerMesh&) = delete;

  // The job's peer key (32 bytes): callers prove it, callees check it. Call before connect().
  void set_key(std::vector<std::uint8_t> key) { key_ = std::move(key); }

  // Shared memory (shm_channel.h) on links to peers on this machine: the callee offers a segment
  // of `slots` slots of `slot_bytes` per direction, the caller maps it. 0: every link on TCP
  // (the default). Call before connect().
  void set_shared_memory(std::size_t slot_bytes, std::uint32_t slots = 2) {
    shm_slot_bytes_ = slot_bytes;
    shm_slots_ = slots;
  }
  // Links whose frames travel through shared memory.
  int shared_memory_links() const;

  // Opens the listener; returns its port.
  int listen(const std::string& bind = "0.0.0.0", int port = 0);
  // Links up with every other rank (addresses indexed by rank; this rank's entry is ignored).
  // Throws IoError if a lower rank cannot be reached within connect_timeout_s.
  void connect(const std::vector<PeerAddress>& addresses, std::function<void()> on_ready,
               FrameHandler on_frame, ErrorHandler on_error, double connect_timeout_s = 10);

  void send(int to, std::shared_ptr<const EncodedFrame> frame);
  bool ready() const { return linked_ == world_ - 1; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  bool writes_pending() const;
  std::uint64_t bytes_sent() const;
  std::uint64_t bytes_received() const;
  void set_read_timeout(double seconds);
  void set_max_body_bytes(std::uint64_t n);
  void close();

 private:
  void accept();
  void adopt(int peer, std::shared_ptr<Connection> conn);
  void failed(int peer, const std::string& why);
  // Why a first frame does not open a link from a worker of this job; empty when it does.
  std::string refuse_hello(const Message& first);

  asio::io_context& io_;
  int rank_;
  int world_;
  ConnectionOptions options_;
  asio::ip::tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<Connection>> links_;  // by rank; null for self and until linked
  std::vector<std::shared_ptr<Connection>> unidentified_;
  int linked_ = 0;
  bool closed_ = false;
  std::vector<std::uint8_t> key_;
  std::size_t shm_slot_bytes_ = 0;
  std::uint32_t shm_slots_ = 2;
  std::vector<std::vector<std::uint8_t>> nonces_seen_;
  std::function<void()> on_ready_;
  FrameHandler on_frame_;
  ErrorHandler on_error_;
};

}  // namespace psgd::net
