#pragma once
// The run directory (DESIGN.md "Run directory contract"): what every run leaves behind and what
// tests and report tools read.
//
//   config.json   the JobSpec, provenance (git revision, host, versions, command line) and workers
//   metrics.csv   one row per evaluation (epoch 0 is the initial model), cumulative bytes;
//                 accuracies are "nan" where they do not apply (--target xx), validation
//                 columns empty without --validation_split; the learning rate in effect
//   workers.csv   per worker and epoch: phase times, bytes, iterations
//   summary.json  the outcome: accuracy, time, bytes, status
//   model.pt, state_dict.pt   written by the Trainer
//
// Files are written as the run goes, so a crashed run still leaves what it had, and never half a
// file (core/files.h): the JSON files and the models are written to a temporary and renamed, the
// CSVs grow by whole rows (one write each, cut back if the disk fills up mid-row). A write that
// fails throws IoError("cannot write <file>: <reason>").
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/files.h"
#include "core/learner.h"
#include "core/metrics.h"
#include "experiments/job_spec.h"

namespace psgd {

struct MetricsRow {
  int epoch = 0;
  std::int64_t iteration = 0;
  double wall_s = 0;
  std::optional<double> virtual_s;
  std::optional<double> train_loss;  // none for epoch 0
  double test_loss = 0;
  double test_accuracy = 0;
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  std::int64_t samples = 0;               // training samples processed so far, all workers
  std::optional<double> validation_loss;  // with --validation_split
  std::optional<double> validation_accuracy;
  // The learning rate in effect: the schedule's rate (core/lr_schedule.h) of the epoch's last
  // iteration (epoch 0: of the first).
  double learn_rate = 0;
  // --target regression: RMSE and R^2 of the test set and of the validation split (EvalStats).
  std::optional<double> test_rmse;
  std::optional<double> test_r2;
  std::optional<double> validation_rmse;
  std::optional<double> validation_r2;

  // The evaluation's figures into this row.
  void set_eval(const EvalStats& e) {
    test_loss = e.loss;
    test_accuracy = e.accuracy;
    validation_loss = e.validation_loss;
    validation_accuracy = e.validation_accuracy;
    test_rmse = e.rmse;
    test_r2 = e.r2;
    validation_rmse = e.validation_rmse;
    validation_r2 = e.validation_r2;
  }
};

struct WorkerRow {
  int epoch = 0;
  int worker = 0;
  std::string host;
  std::int64_t iterations = 0;  // contributions that went into the global model
  std::int64_t samples = 0;
  PhaseTimes times;
  double held_s = 0;      // server time between this worker's gradients arriving and the reply
  double transfer_s = 0;  // wait_s - held_s: network and framing both ways (estimate)
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  // Relative compression error ‖g − D(C(g))‖ / ‖g‖ over the iterations the worker measured it;
  // workers.csv shows the mean (empty when none was measured).
  double compression_error_sum = 0;
  std::int64_t compression_error_count = 0;

  void add_compression_error(double e) {
    if (e >= 0) {
      compression_error_sum += e;
      ++compression_error_count;
    }
  }
  std::int64_t local_steps = 0;    // batches computed for the contributions (local_sgd: H each)
  std::int64_t dropped = 0;        // contributions discarded as too late (--wait_for)
  std::int64_t staleness_sum = 0;  // over the contributions applied (asgd, ssp)
  std::int64_t staleness_max = 0;
  double staleness_mean() const { return iterations ? double(staleness_sum) / iterations : 0.0; }
};

// "runs/<UTC timestamp>-<psgd>-<codec>-n<nodes>" relative to the working directory.
std::string default_run_dir(const JobSpec& spec);

class RunDirectory {
 public:
  // Creates the directory (and parents) for a new run. Throws ConfigError if it cannot be
  // created, or if it already holds a run, finished or not (run_files_in() finds any): a crashed
  // run is continued with --resume, never overwritten.
  //
  // Either constructor also takes an exclusive lock on the directory for this object's lifetime
  // (flock; the kernel drops it when the process ends, however it ends): a second init_server
  // given the same directory while a run is still going there, a --resume of a live run above
  // all, is refused with ConfigError instead of rewriting the live run's files.
  explicit RunDirectory(std::string path);
  // The same check, alone: drivers call it before they spend time loading data.
  static void check_new(const std::string& path);
  // Continues the run in `path` (init_server --resume) whose checkpoint holds `epochs_done`
  // epochs: keeps metrics.csv rows of epochs <= epochs_done and workers.csv rows of epochs
  // <= epochs_done (later ones were written after the checkpoint and will be written again) and
  // appends from there. ConfigError when the directory has no metrics.csv or holds a completed
  // run; the summary.json of a failed run is replaced when this one ends.
  RunDirectory(std::string path, int epochs_done);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;

  void write_config(const nlohmann::json& config);
  // with_wall = false leaves wall_s empty (simulated runs: metrics.csv then depends only on the
  // job and its seed; the real time is in summary.json).
  void append_metrics(const MetricsRow& row, bool with_wall = true);
  void append_worker(const WorkerRow& row);
  void write_summary(const nlohmann::json& summary);
  // Makes the rows appended so far durable (before a checkpoint that counts on them).
  void sync();
  // A new run that could not start (its port taken, say) leaves nothing behind: removes the files
  // this object wrote, and the directory when it made it and nothing else is in it, so the same
  // --output works next time. A resumed run's directory is left as it is. Never throws.
  void discard() noexcept;

  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;
  ~RunDirectory();

 private:
  void lock(const char* flag);

  std::string path_;
  AppendFile metrics_;
  AppendFile workers_;
  int lock_fd_ = -1;
  bool resumed_ = false;
  bool made_directory_ = false;
};

// The files of a run (config.json, metrics.csv, checkpoint.bin, ...) found in `dir`; empty when
// it holds none (a directory with only logs/ in it, as run_local.sh makes, holds no run).
std::vector<std::string> run_files_in(const std::string& dir);

}  // namespace psgd
