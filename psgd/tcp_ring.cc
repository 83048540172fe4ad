#include "psgd/tcp_ring.h"

#include <fmt/format.h>

#include <chrono>

#include "core/error.h"

namespace psgd {

TcpRing::TcpRing(int rank, int world, TcpRingOptions options)
    : rank_(rank),
      world_(world),
      options_(options),
      mesh_(std::make_unique<net::PeerMesh>(
          io_, rank, world,
          net::ConnectionOptions{.max_body_bytes = 16 * options.ring.chunk_elements + (1 << 16),
                                 .read_timeout_s = options.timeout_s})),
      transport_(std::make_unique<net::MeshTransport>(*mesh_, world)),
      ring_(rank, world, options.ring),
      lost_(static_cast<std::size_t>(world)) {
  if (options_.shm_slots > 0) {
    mesh_->set_shared_memory(net::fp32_frame_slot_bytes(options_.ring.chunk_elements),
                             options_.shm_slots);
  }
}

std::string TcpRing::fatal() const {
  if (!error_.empty() || world_ == 1) return error_;
  // The ring needs its predecessor until the sum is complete, and its successor until
  // everything it forwards has been written.
  const auto& prev = lost_[static_cast<std::size_t>((rank_ + world_ - 1) % world_)];
  const auto& next = lost_[static_cast<std::size_t>((rank_ + 1) % world_)];
  if (!prev.empty() && !ring_.done()) return prev;
  if (!next.empty() && (ring_.sends_remaining() || mesh_->writes_pending())) return next;
  return {};
}

TcpRing::~TcpRing() {
  mesh_->close();
}

int TcpRing::listen(const std::string& bind) {
  return mesh_->listen(bind);
}

void TcpRing::connect(const std::vector<net::PeerAddress>& addresses) {
  mesh_->connect(
      addresses, [this] { linked_ = true; },
      [this](int from, Message&& m) {
        if (!error_.empty()) return;
        auto* chunk = std::get_if<RingChunk>(&m);
        try {
          if (chunk == nullptr || from != (rank_ + world_ - 1) % world_) {
            throw ProtocolError(
                fmt::format("peer {} sent {} out of turn", from, type_name(type_of(m))));
          }
          Outbox out;
          ring_.on_chunk(std::move(*chunk), out);
          dispatch(out);
        } catch (const Error& e) {
          error_ = e.what();
        }
      },
      [this](int peer, const std::string& why) {
        // A link the ring does not need any more (ranks that finish close theirs) is no error
        // by itself: fatal() decides when it matters.
        if (peer < 0 || !linked_) {
          if (error_.empty()) error_ = peer >= 0 ? fmt::format("lost peer {}: {}", peer, why) : why;
          return;
        }
        auto& e = lost_[static_cast<std::size_t>(peer)];
        if (e.empty()) e = fmt::format("lost peer {}: {}", peer, why);
      },
      options_.timeout_s);
  run_until([this] { return linked_; }, "linking up with the peers");
}

void TcpRing::allreduce(std::span<float> data) {
  Outbox out;
  ring_.start(round_++, data, out);
  dispatch(out);
  // Done once the sum is here and everything this rank forwards has left: the successor may still
  // be waiting for chunks queued here.
  run_until([this] { return ring_.done() && !mesh_->writes_pending(); }, "allreduce");
}

void TcpRing::dispatch(const Outbox& out) {
  transport_->send(out);
}

void TcpRing::run_until(const std::function<bool()>& done, const char* what) {
  // Peer read deadlines bound every wait while a link is open; this bounds the rest.
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(2 * options_.timeout_s));
  io_.restart();
  std::string why;
  while (!done() && (why = fatal()).empty()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      why = fmt::format("no progress within {:.0f} s", 2 * options_.timeout_s);
      break;
    }
    io_.run_one_for(std::chrono::milliseconds(100));
  }
  if (!why.empty()) {
    error_ = why;
    mesh_->close();
    throw IoError(fmt::format("ring rank {} of {}, {}: {}", rank_, world_, what, why));
  }
}

}  // namespace psgd
