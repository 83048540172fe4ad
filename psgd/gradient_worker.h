#pragma once
// The worker of every gradient-pushing strategy (ssgd, asgd, ssp): on Params it installs the
// parameters and asks to compute; after computing it sends the gradient of one batch, tagged
// with the iteration of the parameters it was computed on, and waits for the next Params.
//
// Which Params arrive, and when, is the server's business: ssgd replies once the round closes,
// asgd at once, ssp once the worker is within the staleness bound, and a worker whose gradient
// was dropped (--wait_for) is sent the current parameters. The only rule the worker enforces is
// that parameters never go back in time.
//
// Overlap (ssgd's --overlap; GradientWorkerOptions): double buffering with one step of delay, as
// Parallel-SGD's fast mode. Having sent the gradient of batch t (computed on the parameters of
// iteration t), the worker computes batch t+1 on those same parameters while that gradient
// travels, and holds it. When the parameters of iteration t+1 arrive it installs them, sends the
// held gradient tagged t+1 at once and computes batch t+2 on them. Every gradient after the first
// is therefore one step stale; the server sees one gradient per worker and round as without
// overlap. The worker needs the next parameters to be those of the next iteration (ssgd with
// every worker in every round) and computes no batch beyond the last iteration.
#include <memory>
#include <vector>

#include "psgd/common.h"
#include "psgd/context.h"

namespace psgd {

struct GradientWorkerOptions {
  // Overlap as above, for a job of this many iterations (0: no overlap).
  std::int64_t overlap_iterations = 0;
};

class GradientWorker final : public WorkerRole {
 public:
  explicit GradientWorker(WorkerContext context, GradientWorkerOptions options = {});
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return done_; }
  // The uplink codec's state (error feedback, worker-side momentum, random streams) and the
  // gradient count.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  // Sends `gradient` (tagged with the iteration it answers) and, with overlap, asks to compute
  // the next one ahead unless that would be beyond the last iteration.
  WorkerAction send(std::shared_ptr<const Message> gradient, Outbox& out);

  WorkerContext ctx_;
  GradientWorkerOptions options_;
  std::shared_ptr<const Message> held_;  // overlap: the next gradient, computed ahead
  std::int64_t sent_for_ = -1;           // iteration of the last gradient sent
  bool compute_asked_ = false;           // compute_step() was asked for and has not run
  std::unique_ptr<Message> overtaken_;   // overlap: Params that arrived before the step ahead
  std::unique_ptr<Codec> uplink_;
  std::unique_ptr<Codec> downlink_;
  std::int64_t iteration_ = -1;  // iteration of the parameters last received
  static constexpr std::int64_t kErrorSampleEvery = 10;
  std::int64_t done_ = 0;
  double waiting_since_ = -1;
  PayloadRecycler payloads_;    // the uplink payload, reused between iterations
  std::vector<float> scratch_;  // decoded gradient when measuring the compression error
  PhaseTimes times_;
};

}  // namespace psgd
