#pragma once
// MeshTransport: the Transport (network/transport.h) of a worker whose messages all go to its
// peers over a PeerMesh (the ring allreduce outside a job, psgd/tcp_ring.h). A worker inside a job
// also talks to the server and uses its driver's Transport (experiments/client/driver.h).
#include "network/tcp/peer_mesh.h"
#include "network/transport.h"

namespace psgd::net {

class MeshTransport final : public Transport {
 public:
  MeshTransport(PeerMesh& mesh, int node_count) : Transport(node_count), mesh_(mesh) {}

 protected:
  void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) override {
    mesh_.send(to, frame);
  }

 private:
  PeerMesh& mesh_;
};

}  // namespace psgd::net
