// Over 400 lines on purpose: one Asio connection object, whose read loop, write queue (gather
// writes, shared-memory slots) and timers share its state and its thread; splitting it would
// spread one state machine across files.
#include "network/tcp/connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "network/backoff.h"
#include "network/messages/link.h"

namespace psgd::net {
namespace {

std::chrono::steady_clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds));
}

// Link messages are small: encoded into one buffer, never through shared memory.
std::shared_ptr<const EncodedFrame> link_frame(const LinkMessage& message) {
  return std::make_shared<const EncodedFrame>(encode_frame(message));
}

std::string endpoint_name(const asio::ip::tcp::socket& socket) {
  std::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, ConnectionOptions options)
    : socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      heartbeat_(socket_.get_executor()),
      options_(options),
      peer_(endpoint_name(socket_)) {
  std::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void Connection::start(FrameHandler on_frame, ErrorHandler on_error) {
  on_frame_ = std::move(on_frame);
  on_error_ = std::move(on_error);
  read_header();
}

void Connection::arm_deadline() {
  last_progress_ = asio::steady_timer::clock_type::now();
  wait_for_silence(last_progress_ + to_duration(options_.read_timeout_s));
}

void Connection::wait_for_silence(asio::steady_timer::time_point at) {
  deadline_.expires_at(at);
  deadline_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec || self->closed_) return;  // cancelled: the read completed
    // A timer that expired just as the read completed may still run: only act on a deadline that
    // is really in the past (the pattern of Asio's timeouts examples).
    const auto now = asio::steady_timer::clock_type::now();
    if (self->deadline_.expiry() > now) return;
    // The timeout is for silence, not for a frame: a large frame on a slow or shared link may
    // take longer than the timeout to arrive, and only a stretch without a byte is silence.
    const auto silent_at = self->last_progress_ + to_duration(self->options_.read_timeout_s);
    if (silent_at > now) {
      self->wait_for_silence(silent_at);
      return;
    }
    // Bytes waiting unread: this process was busy, the peer was not silent.
    std::error_code available_ec;
    if (self->socket_.available(available_ec) > 0 && !available_ec) {
      self->arm_deadline();
      return;
    }
    self->fail(fmt::format("no data from {} for {:g} s (timeout)", self->peer_,
                           self->options_.read_timeout_s));
  });
}

std::function<std::size_t(const std::error_code&, std::size_t)> Connection::noting_progress() {
  // Called by async_read before each partial read with the bytes read so far; a read that brought
  // bytes is progress. Reads stay at Asio's default size (transfer_all's).
  return [this, seen = std::size_t{0}](const std::error_code& ec, std::size_t n) mutable {
    if (n > seen) {
      seen = n;
      last_progress_ = asio::steady_timer::clock_type::now();
    }
    return asio::transfer_all()(ec, n);
  };
}

void Connection::read_header() {
  if (closed_) return;
  arm_deadline();
  asio::async_read(
      socket_, asio::buffer(header_), noting_progress(),
      [self = shared_from_this()](std::error_code ec, std::size_t) {
        if (self->closed_) return;
        if (ec) {
          self->fail(ec == asio::error::eof
                         ? fmt::format("{} closed the connection", self->peer_)
                         : fmt::format("reading from {}: {}", self->peer_, ec.message()));
          return;
        }
        FrameHeader h;
        try {
          h = decode_header(self->header_, self->options_.max_body_bytes);
          if (self->filter_ && !self->filter_(h.type)) {
            throw ProtocolError(fmt::format("a {} frame is not allowed here", type_name(h.type)));
          }
        } catch (const Error& e) {
          self->fail(fmt::format("bad frame from {}: {}", self->peer_, e.what()));
          return;
        }
        self->read_body(h);
      });
}

void Connection::read_body(const FrameHeader& header) {
  // Decoded payloads view the body instead of copying it (Payload::frame): a buffer still held by
  // a message the handler kept is left to it, and a free one is read into.
  body_ = next_body(header.body_bytes);
  asio::async_read(socket_, asio::buffer(*body_), noting_progress(),
                   [self = shared_from_this(), header](std::error_code ec, std::size_t) {
                     if (self->closed_) return;
                     self->deadline_.cancel();
                     if (ec) {
                       self->fail(fmt::format("{} stopped in the middle of a {} frame: {}",
                                              self->peer_, type_name(header.type), ec.message()));
                       return;
                     }
                     const std::size_t frame_bytes = kFrameHeaderBytes + self->body_->size();
                     self->bytes_received_ += frame_bytes;
                     if (self->draining_) {  // closing: read to the peer's end, deliver nothing
                       self->read_header();
                       return;
                     }
                     try {
                       if (is_link(header.type)) {
                         self->on_link_frame(header.type);
                       } else {
                         Message m = decode_body(
                             header.type, {self->body_->data(), self->body_->size()}, self->body_);
                         if (!self->draining_) self->on_frame_(std::move(m), frame_bytes);
                       }
                     } catch (const ProtocolError& e) {
                       self->fail(fmt::format("bad {} message from {}: {}", type_name(header.type),
                                              self->peer_, e.what()));
                       return;
                     } catch (const Error& e) {
                       self->fail(e.what());
                       return;
                     }
                     self->read_header();
                   });
}

std::shared_ptr<Connection::Body> Connection::next_body(std::size_t bytes) {
  body_.reset();
  std::size_t pooled = 0;
  std::shared_ptr<Body> body;
  for (const auto& b : bodies_) {
    pooled += b->capacity();
    if (!body && b.use_count() == 1) body = b;
  }
  if (!body) {
    body = std::make_shared<Body>();
    if (bodies_.empty() || (bodies_.size() < kSpareBodies && pooled + bytes <= kSpareBodyBytes)) {
      bodies_.push_back(body);
    }
  }
  body->resize(bytes);
  return body;
}

void Connection::send(const Message& message) {
  send(std::make_shared<const Message>(message));
}

void Connection::send(std::shared_ptr<const Message> message) {
  send_frame(std::make_shared<const EncodedFrame>(std::move(message)));
}

void Connection::send_frame(std::shared_ptr<const EncodedFrame> frame) {
  if (closed_ || closing_) return;
  const std::size_t counted = frame->size();
  // Only frames queued once both ends agreed may use a slot: the opener queues its ShmReply when
  // it maps the segment, and the creator must read that before any notice.
  writes_.push_back({std::move(frame), counted, shm_ != nullptr});
  if (!writing_) write_next();
}

void Connection::move_body_to_shared_memory(PendingWrite& w) {
  const std::size_t body = w.frame->size() - kFrameHeaderBytes;
  if (!shm_ || !w.shm_allowed || body < kShmMinBody || is_link(w.frame->type())) return;
  // The body (everything after the header) goes into a slot; the socket carries a notice. Tried
  // when the frame is about to be written, not when it was queued: a receiver that was busy may
  // have given slots back meanwhile. With every slot still held, the body goes over the socket.
  std::vector<std::span<const std::uint8_t>> parts(w.frame->segments());
  parts.front() = parts.front().subspan(kFrameHeaderBytes);
  if (const auto slot = shm_->put(parts)) {
    w.frame = link_frame(ShmFrame{
        .slot = *slot, .type = static_cast<std::uint16_t>(w.frame->type()), .body_bytes = body});
    ++shm_frames_;
  }
}

void Connection::write_next() {
  if (writes_.empty()) {
    writing_ = false;
    if (closing_) drain();
    return;
  }
  writing_ = true;
  move_body_to_shared_memory(writes_.front());
  gather_.clear();
  for (const auto& segment : writes_.front().frame->segments()) {
    gather_.emplace_back(segment.data(), segment.size());
  }
  asio::async_write(socket_, gather_, [self = shared_from_this()](std::error_code ec, std::size_t) {
    if (self->closed_) return;
    if (ec) {
      self->fail(fmt::format("writing to {}: {}", self->peer_, ec.message()));
      return;
    }
    // Counted when written, as the frame it stands for (a shared-memory
    // notice counts as its whole frame).
    self->bytes_sent_ += self->writes_.front().counted_bytes;
    self->last_write_ = std::chrono::steady_clock::now();
    self->writes_.pop_front();
    self->write_next();
  });
}

std::string Connection::local_address() const {
  std::error_code ec;
  const auto local = socket_.local_endpoint(ec);
  return ec ? std::string() : local.address().to_string();
}

bool Connection::peer_on_this_host() const {
  std::error_code a, b;
  const auto local = socket_.local_endpoint(a);
  const auto remote = socket_.remote_endpoint(b);
  return !a && !b && local.address() == remote.address();
}

bool Connection::offer_shared_memory(std::size_t slot_bytes, std::uint32_t slots) {
  if (closed_ || closing_ || shm_ || shm_offered_) return false;
  try {
    shm_offered_ = ShmChannel::create(slot_bytes, slots);
  } catch (const Error& e) {
    spdlog::debug("{}: staying on TCP: {}", peer_, e.what());
    return false;
  }
  send_frame(link_frame(ShmOffer{.name = shm_offered_->name(),
                                 .slot_bytes = shm_offered_->slot_bytes(),
                                 .slots = shm_offered_->slots()}));
  return true;
}

void Connection::on_link_frame(MessageType type) {
  std::visit([this](const auto& m) { on_link(m); }, decode_link_body(type, *body_));
}

// Nothing to do: reading it refreshed the read deadline.
void Connection::on_link(const Heartbeat&) {}

void Connection::on_link(const ShmOffer& offer) {
  ShmReply reply;
  if (!shm_accept_) {
    reply.why = "shared memory is switched off here";
  } else if (shm_ || shm_offered_) {
    reply.why = "this link has a shared-memory offer already";
  } else {
    try {
      auto channel = ShmChannel::open(offer.name, offer.slot_bytes, offer.slots);
      channel->unlink();
      // Attached before the reply is queued: every frame sent from now on may use it, and the
      // peer reads the reply before any notice that follows it.
      shm_ = std::move(channel);
      reply.accepted = true;
    } catch (const Error& e) {
      reply.why = e.what();
    }
  }
  send_frame(link_frame(reply));
}

void Connection::on_link(const ShmReply& reply) {
  if (!shm_offered_) throw ProtocolError("a ShmReply to no offer");
  shm_offered_->unlink();
  if (reply.accepted) {
    shm_ = std::move(shm_offered_);
  } else {
    spdlog::debug("{} stays on TCP: {}", peer_, reply.why);
  }
  shm_offered_.reset();
}

void Connection::on_link(const ShmFrame& notice) {
  if (!shm_) throw ProtocolError("a ShmFrame on a link without shared memory");
  const auto inner = static_cast<MessageType>(notice.type);
  if (!known_type(notice.type) || is_link(inner)) {
    throw ProtocolError(fmt::format("a ShmFrame cannot carry message type {}", notice.type));
  }
  if (filter_ && !filter_(inner)) {
    throw ProtocolError(fmt::format("a {} frame is not allowed here", type_name(inner)));
  }
  if (notice.body_bytes > options_.max_body_bytes) {
    throw ProtocolError(fmt::format("{} frame of {} bytes exceeds the limit of {} bytes",
                                    type_name(inner), notice.body_bytes, options_.max_body_bytes));
  }
  auto [view, owner] = shm_->take(notice.slot, notice.body_bytes);
  const std::size_t frame_bytes = kFrameHeaderBytes + view.size();
  // Counted as the frame it stands for (the notice itself was counted on arrival).
  bytes_received_ += frame_bytes - (kFrameHeaderBytes + body_->size());
  Message m = decode_body(inner, view, owner);
  owner.reset();
  if (!draining_) on_frame_(std::move(m), frame_bytes);
}

void Connection::start_heartbeats(double interval_s) {
  heartbeat_s_ = interval_s;
  if (heartbeat_s_ > 0) arm_heartbeat();
}

void Connection::arm_heartbeat() {
  heartbeat_.expires_after(to_duration(heartbeat_s_));
  heartbeat_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec || self->closed_ || self->closing_) return;
    const auto idle = std::chrono::steady_clock::now() - self->last_write_;
    if (!self->writing_ && idle >= to_duration(self->heartbeat_s_ * 0.9)) {
      static const auto frame = link_frame(Heartbeat{});
      self->send_frame(frame);
    }
    self->arm_heartbeat();
  });
}

void Connection::close_after_writes() {
  if (closing_) return;
  closing_ = true;
  if (!writing_) drain();
}

void Connection::drain() {
  if (closed_ || draining_) return;
  // Half-close: the peer reads everything sent (a Finish, a refusal) and then our end-of-stream.
  // Closing outright could make the kernel answer the peer's next bytes (a heartbeat, a frame in
  // flight) with a reset that destroys what it has not read yet.
  draining_ = true;
  heartbeat_.cancel();
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) {
    close();
    return;
  }
  options_.read_timeout_s = std::min(options_.read_timeout_s, kDrainSeconds);
  arm_deadline();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ec;
  deadline_.cancel();
  heartbeat_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  writes_.clear();
}

void Connection::fail(const std::string& why) {
  if (closed_) return;
  if (draining_) {  // the peer's end-of-stream (or silence) is what a drain waits for
    close();
    return;
  }
  close();
  if (on_error_ && !draining_) {
    auto handler = std::move(on_error_);
    on_error_ = nullptr;
    handler(why);
  }
}

asio::ip::tcp::socket dial(asio::io_context& io, const std::string& host, int port,
                           double timeout_s) {
  using clock = std::chrono::steady_clock;
  const auto give_up = clock::now() + to_duration(timeout_s);
  std::string last_error = "no attempt made";
  Backoff backoff;
  asio::ip::tcp::resolver resolver(io);
  while (true) {
    std::error_code ec;
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec) {
      throw IoError(fmt::format("cannot resolve \"{}\": {}", host, ec.message()));
    }
    asio::ip::tcp::socket socket(io);
    bool done = false;
    std::error_code connect_ec;
    asio::async_connect(socket, endpoints, [&](std::error_code e, const asio::ip::tcp::endpoint&) {
      connect_ec = e;
      done = true;
    });
    io.restart();
    // run_one_until, not run_for: other work on `io` (a listener in the same process, say) must
    // not keep us here once the connect has completed.
    while (!done && clock::now() < give_up)
      io.run_one_until(give_up);
    if (!done) {
      socket.close();
      while (!done)
        io.run_one_for(std::chrono::milliseconds(100));
      last_error = "connection attempt timed out";
    } else if (!connect_ec) {
      io.restart();
      return socket;
    } else {
      last_error = connect_ec.message();
    }
    // Capped exponential backoff with jitter: quick while a server starts, gentle on one that is
    // gone.
    const auto wait = to_duration(backoff.next());
    if (clock::now() + wait >= give_up) break;
    std::this_thread::sleep_for(wait);
  }
  throw IoError(fmt::format("cannot connect to {}:{} within {:.0f} s: {}", host, port, timeout_s,
                            last_error));
}

}  // namespace psgd::net
