#pragma once
// InMemoryNetwork: the Transport of tests that run every node of a job in one process and one
// thread (tests/psgd/role_sim.h drives every strategy through it). Each node's transport appends
// what it sends to the link's queue, in send order; the test decides which link delivers next
// and hands the message to the receiving role. Nothing is encoded on the way (the frame is built
// only to be counted), so a test sees exactly the messages the roles made.
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "network/transport.h"

namespace psgd {

class InMemoryNetwork {
 public:
  explicit InMemoryNetwork(int node_count);
  ~InMemoryNetwork();
  InMemoryNetwork(const InMemoryNetwork&) = delete;
  InMemoryNetwork& operator=(const InMemoryNetwork&) = delete;

  // The transport node `node` sends with (kServer or a worker id).
  Transport& transport(NodeId node);

  // Messages waiting on the link from -> to.
  std::size_t pending(NodeId from, NodeId to) const;
  // Messages waiting for `to` from anyone.
  std::size_t pending_for(NodeId to) const;
  // The oldest message on the link from -> to (pending(from, to) > 0), counted as received by
  // `to`'s transport.
  std::shared_ptr<const Message> take(NodeId from, NodeId to);
  // The oldest message for `to` from anyone, in the order they were sent; `from` is set to its
  // sender when not null.
  std::shared_ptr<const Message> take_any(NodeId to, NodeId* from = nullptr);
  // Drops what waits on the link from -> to (a node that died takes nothing more).
  void clear(NodeId from, NodeId to);
  // What take() and take_any() would return, left in place (null when nothing is waiting).
  std::shared_ptr<const Message> peek(NodeId from, NodeId to) const;
  std::shared_ptr<const Message> peek_any(NodeId to) const;

 private:
  class Node;
  struct Waiting {
    std::uint64_t sequence;
    std::shared_ptr<const EncodedFrame> frame;
  };
  std::deque<Waiting>& link(NodeId from, NodeId to);
  const std::deque<Waiting>& link(NodeId from, NodeId to) const;
  std::shared_ptr<const Message> pop(NodeId from, NodeId to);
  // The sender of the oldest message waiting for `to`, or kServer - 1.
  NodeId oldest_for(NodeId to) const;

  int node_count_;
  std::vector<std::unique_ptr<Node>> nodes_;  // index: node + 1
  std::vector<std::deque<Waiting>> links_;    // index: (from + 1) * (n + 1) + (to + 1)
  std::uint64_t sequence_ = 0;
};

}  // namespace psgd
