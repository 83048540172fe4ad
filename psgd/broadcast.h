#pragma once
// broadcast: all-to-all gradient exchange without a parameter server (the original Parallel-SGD
// platform's `plain` exchange). Every iteration each worker encodes its gradient with the job's
// codec and sends the same payload to every other worker; each worker decodes all n payloads —
// its own included, so that lossy codecs do not make the models drift apart — sums them in
// worker order, divides by n and applies the mean with its own FlatSgd. Every worker thus applies
// bit-identical updates, and the server (AllreduceServer, see psgd/allreduce.h) checks the
// parameter hashes at epoch ends exactly as for allreduce.
//
// Unlike an allreduce, the payloads are never re-encoded on the way, so any codec works (sparse,
// quantised, with error feedback); the price is (n-1) payloads sent per worker and iteration.
#include <map>
#include <memory>
#include <vector>

#include "core/optimizer.h"
#include "psgd/context.h"

namespace psgd {

class BroadcastWorker final : public WorkerRole {
 public:
  BroadcastWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer);
  WorkerAction on_message(const Message& message, Outbox& out) override;
  WorkerAction compute_step(Outbox& out) override;
  std::int64_t iterations_done() const override { return iteration_; }
  // The optimiser's state and the codec's (its error-feedback residual, random stream, ...).
  std::vector<std::uint8_t> snapshot() const override;
  void restore(std::span<const std::uint8_t> state) override;

 private:
  // Applies the iteration once this worker's and every peer's payload are here.
  WorkerAction try_finish(Outbox& out);

  WorkerContext ctx_;
  Schedule schedule_;
  std::unique_ptr<Optimizer> optimiser_;
  std::unique_ptr<Codec> codec_;
  bool started_ = false;
  bool waiting_ = false;        // own gradient sent, waiting for the peers'
  std::int64_t iteration_ = 0;  // iterations completed
  // Payloads by iteration, then by worker (this worker's own included).
  std::map<std::int64_t, std::vector<std::shared_ptr<const Payload>>> payloads_;
  std::vector<std::vector<float>> slots_;
  std::vector<bool> all_;
  std::vector<float> mean_;
  StepStats step_;
  PhaseTimes times_;
  std::uint64_t sent_bytes_ = 0;       // frames sent to peers this iteration
  std::uint64_t multicast_bytes_ = 0;  // the same, the frame counted once
  double wait_start_ = 0;
};

}  // namespace psgd
