#pragma once
// The worker of every gradient-pushing strategy (ssgd, asgd, ssp): on Params it installs the
// parameters and asks to compute; after computing it sends the gradient of one batch, tagged
// with the iteration of the parameters it was computed on, and waits for the next Params.
//
// Which Params arrive, and when, is the server's business: ssgd replies once the round closes,
// asgd at once, ssp once the worker is within the staleness bound, and a worker whose gradient
// was dropped (--wait_for) is sent the current parameters. The only rule the worker enforces is
// that parameters never go back in time.
#include <memory>
#include <vector>

#include "psgd/common.h"
#include "psgd/context.h"

namespace psgd {

class GradientWorker final : public WorkerRole {
 public:
  explicit GradientWorker(WorkerContext context);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return done_; }
  // The uplink codec's state (error feedback, worker-side momentum, random streams) and the
  // gradient count.
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  WorkerContext ctx_;
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
