#pragma once
// Transport: how a driver hands one node's messages to the other nodes of a job (DESIGN.md "The
// one seam that makes simulation possible").
//
// A role answers an event by appending Envelopes to an Outbox (psgd/strategy.h); its driver passes
// the Outbox to the node's Transport. send() is the one fan-out of the code base: one frame per
// distinct message (the envelopes of a broadcast share their message, so it is encoded once) and
// each frame counted once per destination. Implementations only deliver a frame:
//
//   TCP        the server's worker connections, a client's server link and peer links
//              (experiments/server/, experiments/client/)
//   simulated  the SimCluster's network model, in virtual time (experiments/sim_cluster.h)
//   in memory  a queue a test drains (network/in_memory_transport.h)
//
// Traffic is counted here and nowhere else: bytes of the frames sent to each peer, and of the
// frames the driver reports as received from it (received()). What a driver sends outside the
// Transport (its handshakes, the Job, shipped data, heartbeats) is not strategy traffic and is not
// counted, in any driver, so a job's bytes_up and bytes_down are the same simulated and for real.
//
// A Transport belongs to one node. Threading: the driver's thread only.
#include <cstdint>
#include <memory>
#include <vector>

#include "network/frame.h"
#include "network/messages.h"

namespace psgd {

using NodeId = std::int32_t;
inline constexpr NodeId kServer = -1;

// One message to one node. Broadcasts share the message (a Transport encodes it once).
struct Envelope {
  NodeId to = kServer;
  std::shared_ptr<const Message> message;
};
using Outbox = std::vector<Envelope>;

// Bytes of frames one node has sent to and received from one peer.
struct LinkTraffic {
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

class Transport {
 public:
  // `node_count` workers; peers are kServer and 0 .. node_count - 1.
  explicit Transport(int node_count);
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Every envelope of `out`, in order; a message shared by several envelopes is encoded once.
  void send(const Outbox& out);
  void send(NodeId to, std::shared_ptr<const Message> message);
  // The driver delivered a frame of `bytes` from `from` to this node's role.
  void received(NodeId from, std::uint64_t bytes);
  LinkTraffic traffic(NodeId peer) const;

 protected:
  // Hands `frame` to node `to` (which the implementation may know to be gone: then it drops it).
  virtual void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) = 0;

 private:
  LinkTraffic& link(NodeId peer);
  std::vector<LinkTraffic> links_;  // index: peer + 1
};

}  // namespace psgd
