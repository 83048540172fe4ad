#pragma once
// A blocking ring allreduce over TCP for one rank: the RingAllreduce state machine driven by a
// PeerMesh on a private io_context. For tests, benchmarks and any program that wants a plain
// collective call; the client drives the same state machine from its own event loop instead.
//
// Usage (one TcpRing per rank, e.g. one per thread):
//   TcpRing ring(rank, world);
//   int port = ring.listen();             // publish it to the other ranks
//   ring.connect(addresses);              // blocks until all links are up
//   ring.allreduce(data);                 // data becomes the element-wise sum over the ranks
//
// Failure: a peer that disconnects, stays silent longer than `timeout_s` or sends garbage makes
// allreduce()/connect() throw IoError naming the peer; never a hang.
//
// Transport: loopback TCP, or with TcpRingOptions::shm_slots shared memory for the chunks of
// peers on this machine (network/tcp/shm_channel.h); the results are bit-identical either way.
#include <asio.hpp>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/collective.h"
#include "network/tcp/mesh_transport.h"
#include "network/tcp/peer_mesh.h"
#include "psgd/ring_allreduce.h"

namespace psgd {

struct TcpRingOptions {
  RingOptions ring;
  double timeout_s = 30;  // longest silence of a peer, and longest connect
  // Shared-memory slots per link and direction for peers on this machine (0: every chunk over
  // loopback TCP). Each slot holds one chunk; with slots, a chunk is copied once into the slot
  // instead of through the kernel, as the client's peer links do with --shared_memory on.
  std::uint32_t shm_slots = 0;
};

class TcpRing final : public Collective {
 public:
  TcpRing(int rank, int world, TcpRingOptions options = {});
  ~TcpRing() override;

  int listen(const std::string& bind = "127.0.0.1");
  void connect(const std::vector<net::PeerAddress>& addresses);
  void allreduce(std::span<float> data);
  void allreduce_sum(std::span<float> data) override { allreduce(data); }
  std::string name() const override { return "ring"; }

  int rank() const { return rank_; }
  std::uint64_t bytes_sent() const { return mesh_->bytes_sent(); }
  // Links whose chunks travel through shared memory (after connect()).
  int shared_memory_links() const { return mesh_->shared_memory_links(); }

 private:
  void run_until(const std::function<bool()>& done, const char* what);
  void dispatch(const Outbox& out);
  std::string fatal() const;  // why the current wait cannot succeed; empty if it still can

  int rank_;
  int world_;
  TcpRingOptions options_;
  asio::io_context io_;
  std::unique_ptr<net::PeerMesh> mesh_;
  std::unique_ptr<net::MeshTransport> transport_;  // sends ring_'s chunks over mesh_
  RingAllreduce ring_;
  std::int64_t round_ = 0;
  std::string error_;              // protocol errors, failures while linking
  std::vector<std::string> lost_;  // by peer: why its link closed
  bool linked_ = false;
};

}  // namespace psgd
