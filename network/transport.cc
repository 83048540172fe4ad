#include "network/transport.h"

#include "core/error.h"

namespace psgd {

Transport::Transport(int node_count) : links_(static_cast<std::size_t>(node_count) + 1) {}

LinkTraffic& Transport::link(NodeId peer) {
  PSGD_CHECK(peer >= kServer && static_cast<std::size_t>(peer + 1) < links_.size(),
             "no node {} in a job of {} workers", peer, links_.size() - 1);
  return links_[static_cast<std::size_t>(peer + 1)];
}

LinkTraffic Transport::traffic(NodeId peer) const {
  return const_cast<Transport*>(this)->link(peer);
}

void Transport::received(NodeId from, std::uint64_t bytes) {
  link(from).received += bytes;
}

void Transport::send(NodeId to, std::shared_ptr<const Message> message) {
  auto frame = std::make_shared<const EncodedFrame>(std::move(message));
  link(to).sent += frame->size();
  deliver(to, frame);
}

void Transport::send(const Outbox& out) {
  const Message* last = nullptr;
  std::shared_ptr<const EncodedFrame> frame;
  for (const Envelope& env : out) {
    PSGD_CHECK(env.message != nullptr, "an empty envelope to node {}", env.to);
    if (env.message.get() != last) {
      frame = std::make_shared<const EncodedFrame>(env.message);
      last = env.message.get();
    }
    link(env.to).sent += frame->size();
    deliver(env.to, frame);
  }
}

}  // namespace psgd
