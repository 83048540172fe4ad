#pragma once
// RunRecorder: turns what a server role reports into the run directory and the progress lines.
//
// It is the ServerObserver of the run and knows nothing of sockets or event queues, so the TCP
// server and the simulator record runs identically. The driver calls start() once the workers
// are ready, after_dispatch() after every batch of role output (the recorder evaluates the model
// on the test set whenever an epoch has ended), and finish() once.
//
// Evaluation: by default the recorder evaluates `model` at each epoch end before it returns. With
// `evaluate_async` (the TCP server) it asks for an evaluation of a snapshot of the parameters that
// runs while training goes on, and writes the epoch's rows (metrics.csv, workers.csv, the progress
// line, the epoch listener) once it is done, in epoch order; finish() waits for it. metrics.csv's
// wall_s is then the time training reached the epoch end, and summary.json's wall_seconds the time
// the last evaluation ended.
//
// Model averaging (--model_average ema:BETA, core/model_average.h): with average_decay > 0 the
// recorder keeps an exponential average of `model`'s parameters, adding them whenever the
// iteration advances (after_dispatch), and every epoch-end evaluation and the saved model
// (load_evaluated_model) are of the average; the last epoch also evaluates the last iterate
// (summary.json final_iterate_test_accuracy), after the wall clock has stopped.
//
// Model files during the run (--save_every_epoch, with `save_model`): when an epoch's row is
// written, the model that was evaluated for it (the epoch end's parameters, or their average, and
// the buffers of that moment) is saved as model_epoch_<E>.pt, and as model_best.pt when its loss
// is the lowest so far, as Keras' ModelCheckpoint(save_best_only): the validation loss when there
// is a validation split, else the test loss (summary.json's best_model says which).
//
// Time: `wall` is real time; `virtual_clock` is the simulator's clock, or null in a real run (then
// virtual_s stays empty and summary.json says virtual_seconds: null). A simulator sets
// metrics_wall = false: metrics.csv's wall_s is then left empty so that two runs of one seed give
// byte-identical files; summary.json's wall_seconds still holds the real time.
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/learner.h"
#include "core/lr_schedule.h"
#include "core/model_average.h"
#include "experiments/divergence.h"
#include "experiments/job_spec.h"
#include "experiments/run_dir.h"
#include "psgd/context.h"

namespace psgd {

// Cumulative bytes a worker has sent to (up) and received from (down) the server.
struct Traffic {
  std::uint64_t up = 0;
  std::uint64_t down = 0;
};

struct RecorderSetup {
  const JobSpec* spec = nullptr;
  Schedule schedule;
  RunDirectory* dir = nullptr;
  Learner* model = nullptr;  // evaluated at every epoch end; its parameters are the global model
  const Clock* wall = nullptr;
  const Clock* virtual_clock = nullptr;
  // Evaluates a snapshot of these parameters (`model`'s or their average) in the background (see
  // above); null: evaluate in place.
  std::function<std::shared_future<EvalStats>(std::span<const float> parameters)> evaluate_async;
  std::function<Traffic(int worker)> traffic;  // cumulative, as the driver counts it
  std::string log_prefix = "init_server";
  bool metrics_wall = true;  // write wall_s into metrics.csv
  double average_decay = 0;  // --model_average's BETA (JobSpec::model_average_decay); 0: off
  // Writes `model` as <run dir>/model<tag>.pt and state_dict<tag>.pt (nn::Trainer::save); needed
  // with --save_every_epoch.
  std::function<void(const std::string& tag)> save_model;
};

class RunRecorder final : public ServerObserver {
 public:
  explicit RunRecorder(RecorderSetup setup);

  void set_worker_hosts(std::vector<std::string> hosts) { hosts_ = std::move(hosts); }
  // Bytes and seconds spent shipping data to workers (--ship_data), kept apart from training
  // traffic: summary.json data_bytes, data_seconds.
  void set_data_traffic(std::uint64_t bytes, double seconds) {
    data_bytes_ = bytes;
    data_seconds_ = seconds;
  }

  // --ship_data auto / always: the workers the server sent their rows, one object each (worker,
  // host, dataset, why, samples, wire_bytes): summary.json shipped_workers ([] when none was).
  void set_shipped_workers(nlohmann::json workers) { shipped_ = std::move(workers); }

  // Called after every evaluation with its metrics row and that epoch's worker rows (none for
  // the initial evaluation, epoch 0): TensorBoard scalars and the like.
  using EpochListener =
      std::function<void(const MetricsRow& row, const std::vector<WorkerRow>& workers)>;
  void set_epoch_listener(EpochListener listener) { on_epoch_ = std::move(listener); }

  // Evaluates the initial model (epoch 0) and starts the clocks.
  void start();
  // Records every epoch that has ended by `iteration`; returns the number of epochs completed
  // (their evaluations may still be running).
  int after_dispatch(std::int64_t iteration);
  // Writes the rows of every epoch whose evaluation has ended; with `wait`, waits for them all.
  // IoError when a row cannot be written (that epoch's rows are then dropped, not retried).
  void write_evaluated(bool wait);
  // Makes the rows written so far durable (fsync), before a checkpoint that counts on them.
  void sync_rows() { s_.dir->sync(); }
  // Writes summary.json (and nothing else); safe to call once, whatever happened before.
  // `extra` is merged into summary.json (a driver's own figures).
  void finish(const std::string& status, bool ok, std::int64_t iterations,
              const nlohmann::json& extra = nlohmann::json::object());
  // A short progress line for the current epoch, or "" when nothing is under way.
  std::string progress(std::int64_t iteration) const;

  void on_worker(NodeId worker, const WorkerReport& report) override;
  void on_round(const RoundStats& stats) override;

  // Checkpoint and resume (psgd/checkpoint.h): the recorder's counters and history as JSON (call
  // write_evaluated(true) first: no evaluation may be pending), and
  // a fresh recorder continuing from them. resume() is called instead of the initial evaluation
  // of start(): start() then only restarts the clocks, and wall_s, bytes and samples continue
  // from the checkpoint's values. Per-worker rows of the epoch the checkpoint fell into, and its
  // samples/s on the console, count from the resume on.
  nlohmann::json snapshot(std::int64_t iteration) const;
  void resume(const nlohmann::json& state);
  // The model average (--model_average) as bytes for the checkpoint (empty when off), and back:
  // a resumed run averages on from the checkpoint's iteration exactly as an uninterrupted one.
  // resume_average() throws ConfigError for state that does not fit this run's average.
  std::vector<std::uint8_t> average_state() const;
  void resume_average(std::span<const std::uint8_t> state, std::int64_t iteration);

  // Writes the model that was evaluated (the average, with --model_average) into `model`'s
  // parameters, for saving once training is over; nothing without averaging.
  void load_evaluated_model();

  // The first loss that was not finite (experiments/divergence.h): a round's training loss or an
  // evaluation's test or validation loss; null while every loss is a number. Drivers check it
  // after every after_dispatch() and end the run with --on_divergence stop.
  const std::optional<Divergence>& divergence() const { return divergence_.divergence(); }

  int epochs_done() const { return epoch_; }
  bool started() const { return started_; }
  const std::vector<MetricsRow>& history() const { return history_; }

 private:
  void end_epoch(std::int64_t iteration);
  // Evaluates `parameters` (empty: `model`'s own) in the background or in place.
  std::shared_future<EvalStats> evaluate(std::span<const float> parameters);

  // An epoch whose rows wait for its evaluation.
  struct PendingEpoch {
    MetricsRow row;
    std::vector<WorkerRow> workers;
    double rate = 0;  // samples/s of the epoch
    double eta = 0;
    std::shared_future<EvalStats> eval;
    std::shared_future<EvalStats> iterate;  // averaging, last epoch: the last iterate's
    // --save_every_epoch: the evaluated parameters and the buffers at the epoch end.
    std::vector<float> parameters, buffers;
  };
  // --save_every_epoch: saves the epoch's model files for a row just written.
  void save_epoch_model(const PendingEpoch& p);
  // The loss model_best.pt is chosen by (validation, else test) and the best so far.
  static double monitored_loss(const MetricsRow& row);
  std::optional<std::pair<int, double>> best_model_;  // epoch, loss
  std::deque<PendingEpoch> pending_;
  std::optional<double> final_wall_;       // when the last epoch's evaluation ended
  std::unique_ptr<ModelAverage> average_;  // --model_average; null: off
  std::int64_t averaged_iteration_ = 0;    // the iteration average_ has seen
  std::vector<float> averaged_, live_;     // the average, and the live parameters set aside
  std::optional<EvalStats> final_iterate_;
  double wall_since_start() const;
  std::optional<double> virtual_since_start() const;

  RecorderSetup s_;
  const JobSpec& spec_;
  LrSchedule learn_rate_;  // the job's schedule: metrics.csv's learn_rate
  std::vector<std::string> hosts_;
  std::vector<WorkerRow> rows_;    // this epoch
  std::vector<WorkerRow> totals_;  // the whole run
  // Peer-to-peer strategies: bytes each worker sent to its peers, and with each multicast once.
  std::vector<std::uint64_t> peer_bytes_, multicast_bytes_;
  std::vector<std::vector<std::int64_t>> staleness_histogram_;  // per worker, last bin: ">="
  std::int64_t rounds_short_ = 0;
  std::vector<Traffic> marks_;
  Traffic at_start_;
  Traffic before_;           // bytes counted before a resume
  double wall_before_ = 0;   // wall seconds before a resume
  double eval_seconds_ = 0;  // of the wall seconds, spent in the epoch-end evaluations
  bool resumed_ = false;
  bool started_ = false;
  double wall_start_ = 0, virtual_start_ = 0;
  double epoch_wall_start_ = 0;
  int epoch_ = 0;
  double epoch_loss_sum_ = 0;
  std::int64_t epoch_rounds_ = 0;
  std::int64_t samples_total_ = 0;
  std::int64_t samples_at_epoch_start_ = 0;
  std::vector<MetricsRow> history_;
  EpochListener on_epoch_;
  std::uint64_t data_bytes_ = 0;
  double data_seconds_ = 0;
  nlohmann::json shipped_ = nlohmann::json::array();
  DivergenceWatch divergence_;
};

}  // namespace psgd
