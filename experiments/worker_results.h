#pragma once
// Results come home (README "Running on several machines", "The run directory"): each worker's
// log and per-batch trace reach the run directory as workers/<id>/log.txt and
// workers/<id>/trace.csv, in every driver and also for runs that fail or are interrupted.
//
//   TraceLearner     a Learner decorator that turns every batch into one TraceRow (wall time,
//                    epoch, batch, loss, samples, bytes so far); WorkerParts adds it when the
//                    driver asks for a trace (experiments/worker_setup.h)
//   WorkerLogOutbox  the worker's side: what it has not sent yet, cut into WorkerLog pieces of at
//                    most kWorkerLogPieceBytes per field, and nothing beyond the per-worker limits
//   WorkerResults    the server's side: the pieces as they arrive (untrusted input: malformed
//                    rows are dropped and counted, control bytes in the log replaced, everything
//                    beyond the limits dropped and said), written whole at the end of the run
//
// A client streams its pieces about once a second (the server only appends them to memory: it
// never waits for them while training); when the run ends the server asks every worker still
// there for the rest (LogRequest) and waits for it at most kResultsWaitSeconds before it writes
// the run directory. A worker that dies leaves what it had sent until then. --simulate writes
// its simulated workers' traces to the same files.
//
// Threading: each object belongs to one thread (the driver's).
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/learner.h"
#include "network/messages.h"
#include "network/transport.h"

namespace psgd {

// trace.csv's header. wall_s: seconds since the worker built its model (simulated: virtual
// seconds since the job started); epoch: 1 + how many times the worker has gone through its own
// samples; batch: its batch number in its batch order (0 first; a resumed worker continues);
// loss, samples: the batch's mean loss and size; bytes_sent, bytes_received: the worker's strategy
// traffic (every link) so far, when the batch's gradient was computed.
inline constexpr const char* kTraceColumns =
    "wall_s,epoch,batch,loss,samples,bytes_sent,bytes_received";
// At most this many bytes of log and of trace in one WorkerLog.
inline constexpr std::size_t kWorkerLogPieceBytes = 16 * 1024;
// What the server keeps of each worker: log.txt up to 1 MiB, trace.csv up to 16 MiB (about
// 250 000 rows); anything beyond is dropped, and summary.json's "worker_files" says so.
inline constexpr std::size_t kWorkerLogLimit = 1 << 20;
inline constexpr std::size_t kWorkerTraceLimit = 16 << 20;
// How long the server waits, once the run has ended, for the workers' last pieces.
inline constexpr double kResultsWaitSeconds = 5;

struct TraceRow {
  double wall_s = 0;
  std::int64_t epoch = 1;
  std::int64_t batch = 0;
  double loss = 0;
  std::int64_t samples = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

// One CSV line of trace.csv, with its '\n'.
std::string trace_line(const TraceRow& row);
// The row of one line (without '\n'), or nothing when it is not exactly a trace row.
std::optional<TraceRow> parse_trace_line(std::string_view line);

class TraceLearner final : public Learner {
 public:
  using Sink = std::function<void(const TraceRow&)>;
  // `held`: the samples the worker holds; `start_batch`: batches of its order already drawn
  // (a resumed worker); `traffic`: its strategy bytes so far (may be empty: zeros).
  TraceLearner(Learner& inner, const Clock& clock, std::int64_t held, std::int64_t start_batch,
               int batch_size, std::function<LinkTraffic()> traffic, Sink sink);

  std::span<float> parameters() override { return inner_.parameters(); }
  std::span<const float> gradients() const override { return inner_.gradients(); }
  StepStats compute_gradient() override;
  EvalStats evaluate() override { return inner_.evaluate(); }
  std::span<float> buffers() override { return inner_.buffers(); }
  // Staged (allreduce --overlap): one row per step, written when its backward completes.
  std::vector<std::size_t> backward_cuts() const override { return inner_.backward_cuts(); }
  StepStats begin_gradient(std::span<const std::size_t> cuts) override;
  std::size_t continue_backward() override;

 private:
  void record(const StepStats& stats);

  Learner& inner_;
  std::optional<StepStats> staged_;  // a staged step's stats, until its backward completes
  const Clock& clock_;
  double origin_;
  std::int64_t held_;
  std::int64_t batch_;
  std::int64_t seen_;
  std::function<LinkTraffic()> traffic_;
  Sink sink_;
};

class WorkerLogOutbox {
 public:
  void log(std::string_view line);  // one line of the worker's output, without '\n'
  void row(const TraceRow& row);
  bool pending() const { return !log_.empty() || !trace_.empty(); }
  // Everything not sent yet, as pieces of at most kWorkerLogPieceBytes per field (whole lines).
  // `last`: the final piece has `last` set (there is always one then, perhaps empty), and says
  // what the limits made the worker drop.
  std::vector<WorkerLog> take(bool last);

 private:
  std::string log_, trace_;
  std::size_t log_bytes_ = 0, trace_bytes_ = 0;  // accepted so far
  std::int64_t dropped_lines_ = 0, dropped_rows_ = 0;
};

class WorkerResults {
 public:
  explicit WorkerResults(int node_count);

  // A piece from worker w. Never throws for its content: the server keeps what is well formed.
  void add(int worker, const WorkerLog& piece);
  // A resumed run (init_server --resume): what the run directory's workers/<id>/ files already
  // hold comes first, then a line saying where the run resumed.
  void load(const std::string& run_dir);
  // Worker w was lost (`why`): its files may end early, and summary.json says why.
  void lost(int worker, const std::string& why);
  // A new client took over worker w's slot: its pieces continue w's files.
  void reopen(int worker);
  // Whether worker w's last piece has arrived.
  bool complete(int worker) const;
  std::int64_t rows(int worker) const;
  // Writes workers/<id>/log.txt and trace.csv under `run_dir` for every worker (a worker that sent
  // nothing gets a header-only trace and an empty log), each file whole (IoError otherwise).
  // Returns summary.json's "worker_files": per worker, what arrived and what is missing.
  nlohmann::json write(const std::string& run_dir) const;

 private:
  struct Files {
    std::string log;
    std::string trace;
    std::int64_t rows = 0;
    std::int64_t malformed = 0;  // trace lines that were not rows
    std::int64_t pieces = 0;
    bool log_truncated = false;    // beyond kWorkerLogLimit
    bool trace_truncated = false;  // beyond kWorkerTraceLimit
    bool oversized = false;        // a piece over kWorkerLogPieceBytes
    bool last = false;
    std::string lost;  // why the worker was lost, if it was
  };
  std::vector<Files> files_;
};

}  // namespace psgd
