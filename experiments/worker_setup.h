#pragma once
// One worker, built from the job and its WorkerSetup (experiments/job_plan.h) by the same code in
// every driver: a client process builds its one worker here, --simulate builds node_count of them.
//
//   Trainer        the model over the worker's samples, batch stream seeds::batch_order(worker)
//                  (or one stream per block for the coded schemes), skipping start_batch batches
//   Straggler      --delay (every driver) and the client's --slowdown: a pause after each batch,
//                  which a client sleeps and the simulator adds to the worker's virtual clock
//   role           the strategy's WorkerRole with its codecs (psgd/factory.h)
//   trace          when the driver asks: one trace row per batch (experiments/worker_results.h)
//
// What differs between drivers is only in WorkerEnv: the clocks, how a pause is taken, and a
// learner decorator of the driver's own (the simulator's timed learner).
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/clock.h"
#include "core/learner.h"
#include "core/straggler.h"
#include "experiments/job_plan.h"
#include "experiments/worker_results.h"
#include "psgd/strategy.h"

namespace psgd {

class Collective;

struct WorkerEnv {
  const Clock* clock = nullptr;               // the worker's clock (steady, or its virtual clock)
  std::function<void(double seconds)> pause;  // sleep, or advance the virtual clock
  const Clock* work = nullptr;       // the process CPU clock (StragglerLearner), may be null
  double slowdown = 1;               // client --slowdown
  Collective* collective = nullptr;  // allreduce on Gloo: the blocking engine
  // Wraps the learner the role drives (the simulator's timed learner); null: none.
  std::function<Learner*(Learner*)> wrap;
  // Each batch's row of the worker's trace (experiments/worker_results.h), measured with `clock`;
  // null: no trace. `traffic`: the worker's strategy bytes so far, for the rows.
  std::function<void(const TraceRow&)> trace;
  std::function<LinkTraffic()> traffic;
};

class WorkerParts {
 public:
  // `data->train` holds the worker's samples at `rows` (a client: its own samples, rows 0..n-1; the
  // simulator: the whole training set, rows = setup.samples), already normalised.
  WorkerParts(const JobSpec& spec, const Schedule& schedule, const WorkerSetup& setup,
              std::shared_ptr<const nn::DataSplit> data, std::vector<std::int64_t> rows,
              const WorkerEnv& env);
  ~WorkerParts();
  WorkerParts(const WorkerParts&) = delete;
  WorkerParts& operator=(const WorkerParts&) = delete;

  nn::Trainer& trainer() { return *trainer_; }
  WorkerRole& role() { return *role_; }
  bool straggling() const { return straggler_ != nullptr; }

  // The worker's own state for a checkpoint (WorkerState.state): its role's snapshot and its
  // model's buffers (BatchNorm's running statistics), which every training batch moves and which
  // the parameters the server holds do not include. restore() takes it back on a freshly built
  // worker, before its first message; empty state is a fresh worker (a new client taking over a
  // lost worker's slot). Throws ProtocolError for state that does not fit this worker.
  std::vector<std::uint8_t> snapshot() const;
  void restore(std::span<const std::uint8_t> state);

 private:
  std::unique_ptr<nn::Trainer> trainer_;
  std::unique_ptr<StragglerLearner> straggler_;
  std::unique_ptr<TraceLearner> trace_;
  std::unique_ptr<WorkerRole> role_;
};

}  // namespace psgd
