#include "network/tcp/peer_mesh.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "network/auth.h"

namespace psgd::net {

using asio::ip::tcp;

PeerMesh::PeerMesh(asio::io_context& io, int rank, int world, ConnectionOptions options)
    : io_(io),
      rank_(rank),
      world_(world),
      options_(options),
      acceptor_(io),
      links_(static_cast<std::size_t>(world)) {
  PSGD_CHECK(world >= 1 && rank >= 0 && rank < world, "peer mesh: rank {} of {}", rank, world);
}

PeerMesh::~PeerMesh() {
  close();
}

int PeerMesh::listen(const std::string& bind, int port) {
  std::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(bind, ec), static_cast<unsigned short>(port));
  if (!ec) acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw IoError(fmt::format("worker {}: cannot listen for peers on {}:{}: {}", rank_, bind, port,
                              ec.message()));
  }
  return acceptor_.local_endpoint().port();
}

void PeerMesh::connect(const std::vector<PeerAddress>& addresses, std::function<void()> on_ready,
                       FrameHandler on_frame, ErrorHandler on_error, double connect_timeout_s) {
  PSGD_CHECK_EQ(static_cast<int>(addresses.size()), world_, "peer table size");
  on_ready_ = std::move(on_ready);
  on_frame_ = std::move(on_frame);
  on_error_ = std::move(on_error);
  if (rank_ < world_ - 1) accept();
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(connect_timeout_s));
  for (int peer = 0; peer < rank_; ++peer) {
    const PeerAddress& a = addresses[static_cast<std::size_t>(peer)];
    tcp::resolver resolver(io_);
    std::error_code ec;
    auto endpoints = resolver.resolve(a.host, std::to_string(a.port), ec);
    if (ec)
      throw IoError(fmt::format("cannot resolve peer {} \"{}\": {}", peer, a.host, ec.message()));
    tcp::socket socket(io_);
    while (true) {
      asio::connect(socket, endpoints, ec);
      if (!ec) break;
      // Every listener is open before the addresses are handed out: a refusal means the peer
      // has gone (or closed its mesh after a failure), not that it is still starting.
      if (ec == asio::error::connection_refused) {
        throw IoError(fmt::format("worker {}: peer {} at {}:{} refused the connection; it has gone",
                                  rank_, peer, a.host, a.port));
      }
      if (std::chrono::steady_clock::now() >= give_up) {
        throw IoError(
            fmt::format("worker {}: cannot connect to peer {} at {}:{} within {:.0f} s: {}", rank_,
                        peer, a.host, a.port, connect_timeout_s, ec.message()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection>(std::move(socket), options_);
    PeerHello hello{.worker = rank_, .node_count = world_};
    if (!key_.empty()) {
      hello.nonce = make_nonce();
      hello.proof = peer_proof(key_, kProtocolVersion, rank_, peer, world_, hello.nonce);
    }
    conn->accept_shared_memory(shm_slot_bytes_ > 0);
    conn->send(hello);
    adopt(peer, std::move(conn));
  }
  if (ready() && on_ready_) on_ready_();
}

void PeerMesh::accept() {
  acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
    if (ec || closed_) return;
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection>(std::move(socket), options_);
    // Until it has said who it is, a caller may send one small PeerHello and nothing else.
    conn->set_max_body_bytes(kAuthFrameLimit);
    conn->set_type_filter([](MessageType t) { return t == MessageType::kPeerHello; });
    unidentified_.push_back(conn);
    // The first frame names the caller; later frames go to the mesh's handler as theirs.
    auto who = std::make_shared<int>(-1);
    std::weak_ptr<Connection> weak = conn;
    conn->start(
        [this, weak, who](Message&& m, std::size_t) {
          if (closed_) return;
          if (*who >= 0) {
            if (on_frame_) on_frame_(*who, std::move(m));
            return;
          }
          auto c = weak.lock();
          if (!c) return;
          std::erase(unidentified_, c);
          if (const std::string why = refuse_hello(m); !why.empty()) {
            // Not a peer of this job (or not the expected one): dropped, the real one may come.
            spdlog::warn("worker {}: dropped a peer link from {}: {}", rank_, c->peer(), why);
            c->close();
            return;
          }
          const auto* hello = std::get_if<PeerHello>(&m);
          *who = hello->worker;
          c->set_max_body_bytes(options_.max_body_bytes);
          c->set_type_filter(nullptr);
          links_[static_cast<std::size_t>(*who)] = c;
          if (shm_slot_bytes_ > 0 && c->peer_on_this_host()) {
            c->offer_shared_memory(shm_slot_bytes_, shm_slots_);
          }
          ++linked_;
          if (ready() && on_ready_) on_ready_();
        },
        [this, weak, who](const std::string& why) {
          if (closed_) return;
          if (*who >= 0) {
            failed(*who, why);
            return;
          }
          if (auto c = weak.lock()) {
            std::erase(unidentified_, c);
            spdlog::warn("worker {}: dropped a peer link from {} before it said who it is: {}",
                         rank_, c->peer(), why);
          }
        });
    accept();
  });
}

std::string PeerMesh::refuse_hello(const Message& first) {
  const auto* hello = std::get_if<PeerHello>(&first);
  if (hello == nullptr) return fmt::format("its first frame was {}", type_name(type_of(first)));
  if (hello->node_count != world_ || hello->worker <= rank_ || hello->worker >= world_) {
    return fmt::format("it says it is worker {} of {}; expected a worker above {} of {}",
                       hello->worker, hello->node_count, rank_, world_);
  }
  if (links_[static_cast<std::size_t>(hello->worker)]) {
    return fmt::format("worker {} is linked already", hello->worker);
  }
  if (key_.empty()) return "";
  if (!check_peer_proof(key_, kProtocolVersion, hello->worker, rank_, world_, hello->nonce,
                        hello->proof)) {
    return fmt::format("it failed to prove it is worker {} of this job", hello->worker);
  }
  if (std::find(nonces_seen_.begin(), nonces_seen_.end(), hello->nonce) != nonces_seen_.end()) {
    return "it replayed an earlier PeerHello";
  }
  nonces_seen_.push_back(hello->nonce);
  return "";
}

void PeerMesh::adopt(int peer, std::shared_ptr<Connection> conn) {
  links_[static_cast<std::size_t>(peer)] = conn;
  ++linked_;
  conn->start(
      [this, peer](Message&& m, std::size_t) {
        if (!closed_ && on_frame_) on_frame_(peer, std::move(m));
      },
      [this, peer](const std::string& why) { failed(peer, why); });
}

void PeerMesh::failed(int peer, const std::string& why) {
  if (closed_) return;
  if (on_error_) on_error_(peer, why);
}

void PeerMesh::send(int to, std::shared_ptr<const EncodedFrame> frame) {
  PSGD_CHECK(to >= 0 && to < world_ && to != rank_, "peer mesh: worker {} addressed {}", rank_, to);
  auto& link = links_[static_cast<std::size_t>(to)];
  PSGD_CHECK(link != nullptr, "peer mesh: worker {} has no link to {}", rank_, to);
  link->send_frame(std::move(frame));
}

bool PeerMesh::writes_pending() const {
  return std::any_of(links_.begin(), links_.end(),
                     [](const auto& l) { return l && l->is_open() && l->writes_pending(); });
}

int PeerMesh::shared_memory_links() const {
  return static_cast<int>(std::count_if(links_.begin(), links_.end(),
                                        [](const auto& l) { return l && l->shared_memory(); }));
}

std::uint64_t PeerMesh::bytes_sent() const {
  std::uint64_t n = 0;
  for (const auto& l : links_)
    if (l) n += l->bytes_sent();
  return n;
}

std::uint64_t PeerMesh::bytes_received() const {
  std::uint64_t n = 0;
  for (const auto& l : links_)
    if (l) n += l->bytes_received();
  return n;
}

void PeerMesh::set_read_timeout(double seconds) {
  options_.read_timeout_s = seconds;
  for (auto& l : links_)
    if (l) l->set_read_timeout(seconds);
}

void PeerMesh::set_max_body_bytes(std::uint64_t n) {
  options_.max_body_bytes = n;
  for (auto& l : links_)
    if (l) l->set_max_body_bytes(n);
}

void PeerMesh::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ec;
  acceptor_.close(ec);
  for (auto& l : links_)
    if (l) l->close();
  for (auto& c : unidentified_)
    c->close();
  unidentified_.clear();
}

}  // namespace psgd::net
