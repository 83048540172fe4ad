#pragma once
// Allreduce on Gloo through libtorch's c10d (c10d::ProcessGroupGloo over a c10d::TCPStore): the
// engine PyTorch DDP uses, as a Collective for the allreduce strategy and the yardstick for our
// ring (psgd/tcp_ring.h). Torch-free header; the implementation is the only c10d code.
//
// Rendezvous: rank 0 hosts the store (GlooStoreHost, before it tells the others its port); every
// rank then constructs a GlooAllreduce, which blocks until all ranks have joined the group.
// Errors: c10d's failures (a rank that never joins, a peer that dies mid-allreduce, the timeout)
// become psgd::IoError.
#include <memory>
#include <span>
#include <string>

#include "core/collective.h"

namespace psgd::nn {

struct GlooOptions {
  int rank = 0;
  int world = 1;
  std::string store_host = "127.0.0.1";  // where rank 0's store listens
  int store_port = 0;
  std::string bind_host = "127.0.0.1";  // the address this rank's Gloo device binds to
  double timeout_s = 120;               // rendezvous and each collective
};

// The TCPStore server on rank 0. port 0 picks a free port.
class GlooStoreHost {
 public:
  GlooStoreHost(int world, int port = 0, double timeout_s = 120);
  ~GlooStoreHost();
  int port() const;

 private:
  friend class GlooAllreduce;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class GlooAllreduce final : public Collective {
 public:
  // Joins the group; rank 0 passes its store host (the others connect to options.store_host).
  explicit GlooAllreduce(const GlooOptions& options, GlooStoreHost* host = nullptr);
  ~GlooAllreduce() override;
  void allreduce_sum(std::span<float> data) override;
  std::string name() const override { return "gloo"; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace psgd::nn
