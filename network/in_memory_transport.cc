#include "network/in_memory_transport.h"

#include "core/error.h"

namespace psgd {

class InMemoryNetwork::Node final : public Transport {
 public:
  Node(InMemoryNetwork& net, NodeId self) : Transport(net.node_count_), net_(net), self_(self) {}

 protected:
  void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) override {
    PSGD_CHECK(to != self_, "node {} sent a message to itself", self_);
    net_.link(self_, to).push_back({net_.sequence_++, frame});
  }

 private:
  InMemoryNetwork& net_;
  NodeId self_;
};

InMemoryNetwork::InMemoryNetwork(int node_count)
    : node_count_(node_count),
      links_(static_cast<std::size_t>(node_count + 1) * static_cast<std::size_t>(node_count + 1)) {
  for (NodeId id = kServer; id < node_count; ++id)
    nodes_.push_back(std::make_unique<Node>(*this, id));
}

InMemoryNetwork::~InMemoryNetwork() = default;

Transport& InMemoryNetwork::transport(NodeId node) {
  PSGD_CHECK(node >= kServer && node < node_count_, "no node {}", node);
  return *nodes_[static_cast<std::size_t>(node + 1)];
}

std::deque<InMemoryNetwork::Waiting>& InMemoryNetwork::link(NodeId from, NodeId to) {
  PSGD_CHECK(from >= kServer && from < node_count_ && to >= kServer && to < node_count_,
             "no link {} -> {}", from, to);
  return links_[static_cast<std::size_t>(from + 1) * static_cast<std::size_t>(node_count_ + 1) +
                static_cast<std::size_t>(to + 1)];
}

const std::deque<InMemoryNetwork::Waiting>& InMemoryNetwork::link(NodeId from, NodeId to) const {
  return const_cast<InMemoryNetwork*>(this)->link(from, to);
}

std::size_t InMemoryNetwork::pending(NodeId from, NodeId to) const {
  return link(from, to).size();
}

std::size_t InMemoryNetwork::pending_for(NodeId to) const {
  std::size_t total = 0;
  for (NodeId from = kServer; from < node_count_; ++from)
    if (from != to) total += link(from, to).size();
  return total;
}

std::shared_ptr<const Message> InMemoryNetwork::pop(NodeId from, NodeId to) {
  auto& q = link(from, to);
  PSGD_CHECK(!q.empty(), "nothing on the link {} -> {}", from, to);
  auto frame = std::move(q.front().frame);
  q.pop_front();
  transport(to).received(from, frame->size());
  return frame->message();
}

std::shared_ptr<const Message> InMemoryNetwork::take(NodeId from, NodeId to) {
  return pop(from, to);
}

NodeId InMemoryNetwork::oldest_for(NodeId to) const {
  NodeId best = kServer - 1;
  std::uint64_t oldest = 0;
  for (NodeId f = kServer; f < node_count_; ++f) {
    if (f == to) continue;
    const auto& q = link(f, to);
    if (!q.empty() && (best < kServer || q.front().sequence < oldest)) {
      best = f;
      oldest = q.front().sequence;
    }
  }
  return best;
}

std::shared_ptr<const Message> InMemoryNetwork::take_any(NodeId to, NodeId* from) {
  const NodeId best = oldest_for(to);
  PSGD_CHECK(best >= kServer, "nothing waiting for node {}", to);
  if (from) *from = best;
  return pop(best, to);
}

void InMemoryNetwork::clear(NodeId from, NodeId to) {
  link(from, to).clear();
}

std::shared_ptr<const Message> InMemoryNetwork::peek(NodeId from, NodeId to) const {
  const auto& q = link(from, to);
  return q.empty() ? nullptr : q.front().frame->message();
}

std::shared_ptr<const Message> InMemoryNetwork::peek_any(NodeId to) const {
  const NodeId best = oldest_for(to);
  return best < kServer ? nullptr : peek(best, to);
}

}  // namespace psgd
