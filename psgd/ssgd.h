#pragma once
// ssgd: synchronous data-parallel SGD through a parameter server (the "parameter averaging" of
// Dean et al. 2012 in its synchronous form; Goyal et al. 2017 for large-batch practice).
//
// Each iteration every worker computes the gradient of its next batch on the current parameters
// and sends it encoded. The server decodes and averages the n gradients, applies them with its
// optimiser and sends the new parameters to every worker, so all workers start the next
// iteration from the same model. With n workers of batch B this is one SGD step on a batch of
// n*B samples: the server's update equals a single-process step on the mean gradient.
#include <memory>
#include <vector>

#include "core/sgd.h"
#include "psgd/context.h"

namespace psgd {

class SsgdServer final : public ServerRole {
 public:
  SsgdServer(Schedule schedule, ServerContext context);
  void on_start(Outbox& out) override;
  void on_message(NodeId from, const Message& message, Outbox& out) override;
  std::int64_t iteration() const override { return iteration_; }
  bool finished() const override { return iteration_ >= schedule_.total_iterations(); }

 private:
  void close_round(Outbox& out);
  std::span<const float> mean_gradient();  // of the slots, summed in worker order
  void broadcast_parameters(Outbox& out);

  struct Pending {
    bool received = false;
    double arrival = 0;
    WorkerReport report;
  };

  Schedule schedule_;
  ServerContext ctx_;
  FlatSgd optimiser_;
  std::unique_ptr<Codec> downlink_;
  std::vector<std::unique_ptr<Codec>> uplink_;  // one decoder per worker
  std::vector<float> sum_;                      // the mean gradient of the round
  std::vector<std::vector<float>> slots_;       // each worker's decoded, weighted gradient
  std::vector<Pending> pending_;
  int received_ = 0;
  double decode_s_ = 0;
  std::int64_t iteration_ = 0;
};

class SsgdWorker final : public WorkerRole {
 public:
  explicit SsgdWorker(WorkerContext context);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return done_; }

 private:
  WorkerContext ctx_;
  std::unique_ptr<Codec> uplink_;
  std::unique_ptr<Codec> downlink_;
  std::int64_t iteration_ = -1;  // iteration of the parameters last received
  static constexpr std::int64_t kErrorSampleEvery = 10;
  std::int64_t done_ = 0;
  double waiting_since_ = -1;
  std::vector<float> scratch_;  // decoded gradient when measuring the compression error
  PhaseTimes times_;
};

}  // namespace psgd
