#pragma once
// ssp: stale synchronous parallel, bounded staleness (Ho et al. 2013, "More effective distributed
// ML via a stale synchronous parallel parameter server").
//
// Every worker has a clock: the number of gradients it has completed. The server applies each
// gradient on arrival, as asgd does (same weighting, psgd/async_update.h), but a worker may start
// its next gradient only while its clock is at most `staleness` ahead of the slowest worker's;
// otherwise the server withholds its reply until the slowest has caught up, and then sends it
// the parameters current at that moment. The slowest worker is never held, so the run cannot
// deadlock. staleness = 0 is lock-step: every worker computes clock c on the same parameters,
// which contain all n updates of clock c-1 -- ssgd's trajectory (with momentum too, as long as it
// stays on the workers, the default: see async_update.h); a staleness larger than the run is asgd.
//
// Iterations count server updates and an epoch is N / batch gradients, as for asgd (asgd.h);
// the bound keeps every worker's share within `staleness` batches of the others'.
#include <vector>

#include "psgd/async_update.h"
#include "psgd/gradient_worker.h"

namespace psgd {

struct SspOptions {
  int staleness = 2;  // how many clocks a worker may run ahead of the slowest
  bool staleness_lr = false;
};

class SspServer final : public ServerRole {
 public:
  SspServer(Schedule schedule, ServerContext context, SspOptions options = {});
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return update_.version(); }
  bool finished() const override { return iteration() >= schedule_.total_iterations(); }

  std::int64_t clock(NodeId worker) const { return clocks_.at(static_cast<std::size_t>(worker)); }
  std::int64_t slowest_clock() const;

  // Checkpoint: the version and optimiser (AsyncUpdate) and each worker's clock (its gradients,
  // hence its batches). A restored server sends the checkpoint's parameters to the workers
  // within the bound and holds the others until the slowest catches up, as before the crash.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;
  std::int64_t worker_batches(NodeId worker) const override;

 private:
  void release_within_bound(Outbox& out);

  struct Held {
    bool waiting = false;
    bool silent = false;  // held at the start of a resumed run: nothing to report
    double arrival = 0;
    WorkerReport report;
  };

  Schedule schedule_;
  ServerContext ctx_;
  SspOptions options_;
  AsyncUpdate update_;
  std::unique_ptr<Codec> downlink_;
  std::vector<std::int64_t> clocks_;
  std::vector<std::int64_t> last_sent_;
  std::vector<Held> held_;
};

using SspWorker = GradientWorker;

}  // namespace psgd
