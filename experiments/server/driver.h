#pragma once
// The TCP driver of init_server (experiments/server/server.h): owns the io_context, the
// listening sockets, the timers and the connections, and joins the socket-free parts. Private
// to experiments/server/. Threading: everything runs on the io_context's thread, except the
// evaluation of a model snapshot (RunRecorder's evaluate_async), which runs on its own, and the
// writing of the run's outputs once it has ended (finish()), during which the io_context thread
// only keeps the links alive.
#include <asio.hpp>

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.h"
#include "experiments/cli.h"
#include "experiments/data_shipping.h"
#include "experiments/job_plan.h"
#include "experiments/recorder.h"
#include "experiments/run_dir.h"
#include "experiments/server/checkpointer.h"
#include "experiments/server/worker_table.h"
#include "experiments/strategy_events.h"
#include "experiments/tensorboard.h"
#include "experiments/timeline.h"
#include "experiments/worker_results.h"
#include "network/auth.h"
#include "network/handshake.h"
#include "network/tcp/connection.h"
#include "network/transport.h"
#include "nn/trainer.h"
#include "psgd/checkpoint.h"
#include "psgd/strategy.h"

namespace psgd {

class Server {
 public:
  explicit Server(const ServerOptions& options);
  ~Server();
  int run();

 private:
  using Conn = net::Connection;
  using ConnPtr = std::shared_ptr<Conn>;
  enum class Phase { kJoining, kLoading, kTraining, kDone };
  class WorkerTransport;  // the server's Transport: frames to the workers' connections

  // driver.cc: setting up, joining, loading
  void prepare();
  static std::string job_id_of(const std::string& dir);
  void listen();
  // What to run next, with the flags this server was given that its workers depend on: the
  // command a worker joins with (its passphrase too), and the --resume command that continues
  // this run where the redialling workers find it (same ports, address and passphrase).
  std::string client_command() const;
  std::string resume_command() const;
  // The iterations done: the role's once training began, before that a resumed run's checkpoint's.
  std::int64_t iterations_done() const {
    return role_ ? role_->iteration() : resumed_ ? resumed_->iteration : 0;
  }
  void accept(asio::ip::tcp::acceptor& acceptor);
  void on_frame(const ConnPtr& conn, Message&& message, std::size_t bytes);
  void on_connection_error(const ConnPtr& conn, const std::string& why);
  void on_handshake(const ConnPtr& conn, net::ServerHandshake& hs, const Message& message);
  void on_hello(const ConnPtr& conn, const Hello& hello);
  // Heartbeats both ways on worker `w`'s link (its Hello's): one silent for --dead_after is lost,
  // and this server beats on it at least three times within the worker's own --dead_after
  // (network/liveness.h). With `say`, a shortened --heartbeat_interval is said in one line.
  void watch(int w, Conn& conn, const Hello& hello, bool say);
  void refuse(const ConnPtr& conn, const std::string& why);
  Job make_job(int worker, int threads) const;
  int worker_threads(int worker) const;
  // How long the event loop polls before it sleeps now: --busy_poll_us once the jobs are out
  // (phase kLoading on), 0 while an evaluation computes beside it (network/tcp/event_loop.h).
  std::chrono::microseconds poll_window() const;
  void offer_shared_memory(Conn& conn);
  void send_jobs();
  void on_data_offer(int worker, const DataOffer& offer);
  void on_ready(int worker, const Ready& ready);
  // local_data.cc (--local_data): a worker's report of its own file; once every worker's is in,
  // the schedule, checkpointer and recorder are fixed over their sizes and LocalPlan goes out.
  void on_local_data(int worker, const LocalData& report);
  void fix_local_schedule();
  // The recorder over schedule_: made in prepare(), remade (with the checkpointer) by --local_data
  // once the workers' sizes fix the schedule.
  void make_recorder();
  bool needs_peers() const;
  // What the workers were doing before training, for a loss then: "loading" or "linking up".
  const char* stage_before_training() const;
  void send_peer_table();
  void on_peers_up(int worker);
  nlohmann::json config_json() const;

  // training.cc: training, faults, the end
  void start_training();
  void on_training_message(int worker, Message&& message, std::size_t bytes);
  // Hands a strategy message to the role and sends what it answers; begins a checkpoint when
  // the update calls for one.
  void dispatch(int worker, const Message& message);
  void on_worker_state(int worker, WorkerState&& state);
  void on_worker_lost(int worker, const std::string& why);
  // Every worker is lost and the strategy takes replacements: wait --join_timeout for one.
  void wait_for_replacements();
  void take_over(const ConnPtr& conn, const Hello& hello);
  void on_rejoined(int worker);
  void drop_replacement(int worker, const std::string& why);
  void record_lost(int worker, const std::string& why, bool carried_on);
  // Checkpoints (experiments/server/checkpointer.h): collect the workers' states, write, then
  // hand the role what was held meanwhile.
  void begin_checkpoint();
  void finish_checkpoint(bool abandon);
  void arm_progress_timer();
  std::shared_future<EvalStats> evaluate_in_background(std::span<const float> parameters);
  Traffic traffic_of(int worker) const;
  void on_worker_left(const ConnPtr& conn, int worker, const Leave& leave);
  // SIGTERM, SIGINT: with checkpoints, stop after the next update, checkpointed; else at once.
  void wait_for_signal();
  void on_signal(int sig);
  void interrupt(int sig, const std::string& checkpoint_note);
  void record_interrupted(int sig, const std::string& note);  // the summary's event
  void stop(int sig, const std::string& note);                // status "interrupted", exit 128+sig
  void fail(const std::string& why, int exit_code = 1);
  // A loss that is not a number (experiments/divergence.h), checked after every dispatch: says so
  // once (and records a "diverged" event); with --on_divergence stop ends the run with status
  // "diverged: ..." (exit 1, the workers told as for a failed run) and returns true.
  bool check_divergence();
  // Says and records it once; null while the losses are numbers.
  const Divergence* note_divergence();
  // Ends the run: stops accepting, writes the outputs on a thread of their own while the links
  // stay alive, then tells every worker the final status (a failed write turns "completed" into
  // "failed: cannot write ...") and closes once they have read it.
  void finish(const std::string& status, bool ok);
  // Results come home (experiments/worker_results.h): asks every worker still linked for the rest
  // of its log and trace, then `then` once all have answered or kResultsWaitSeconds have passed.
  void collect_results(std::function<void()> then);
  void await_results(double deadline, std::function<void()> then);
  void tell_workers(const std::string& status, bool ok);
  void close_when_drained(double deadline);
  // Returns the run's final status and whether it is ok.
  std::pair<std::string, bool> write_outputs(std::string status, bool ok, bool trained);

  ServerOptions opts_;
  const JobSpec& spec_;
  asio::io_context io_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  std::vector<int> ports_;
  asio::steady_timer join_timer_;
  asio::steady_timer progress_timer_;
  asio::steady_timer shutdown_timer_;
  asio::steady_timer stop_timer_;     // how long a signalled server waits for its last checkpoint
  asio::steady_timer results_timer_;  // the wait for the workers' last log and trace pieces
  asio::signal_set signals_;
  int stopping_ = 0;  // the signal that asked for a last checkpoint, while it is awaited
  std::optional<net::AuthKey> key_;  // --passphrase_file / $PSGD_PASSPHRASE
  // The job's id, this process's and --dead_after, told in every handshake.
  net::ServerIdentity id_;
  // Connected, not through the handshake yet; each handshake is shared with its connection's
  // type filter.
  std::map<ConnPtr, std::shared_ptr<net::ServerHandshake>> pending_;
  WorkerTable<Conn> workers_;
  std::unique_ptr<WorkerTransport> transport_;
  Phase phase_ = Phase::kJoining;

  std::unique_ptr<JobPlan> plan_;  // data, normaliser, hold-out, placement, schedule
  Schedule schedule_;
  std::unique_ptr<DataShipper> shipper_;  // --ship_data
  double ship_start_ = -1;
  double data_seconds_ = 0;
  nlohmann::json shipped_ = nlohmann::json::array();  // summary.json shipped_workers
  // --local_data: the test-row check's salt and hashes (experiments/local_data.h), each worker's
  // report (summary.json local_data; null until it arrives).
  std::string local_salt_;
  std::vector<std::uint64_t> local_test_hashes_;
  nlohmann::json local_reports_;
  std::unique_ptr<nn::Trainer> model_;
  // Evaluates a copy of the parameters at each epoch end on its own thread, so training goes on
  // meanwhile; one evaluation at a time.
  std::unique_ptr<nn::Trainer> eval_model_;
  std::shared_future<EvalStats> evaluating_;
  std::unique_ptr<ServerRole> role_;
  std::unique_ptr<RunDirectory> run_;
  std::unique_ptr<Checkpointer> checkpointer_;
  WorkerResults results_;              // the workers' logs and traces, for workers/<id>/
  bool results_closed_ = false;        // being written: later pieces are ignored
  std::optional<Checkpoint> resumed_;  // --resume: the checkpoint continued from

  std::unique_ptr<RunRecorder> recorder_;
  std::unique_ptr<TimelineRecorder> timeline_;      // --timeline
  std::unique_ptr<StrategyEventSink> event_sink_;   // the strategy's events into events_
  std::unique_ptr<ObserverFanout> observers_;       // recorder, events, timeline
  std::unique_ptr<TensorBoardWriter> tensorboard_;  // --tensorboard
  SteadyClock clock_;
  nlohmann::json events_ = nlohmann::json::array();  // summary.json "events": lost workers
  int exit_code_ = 1;
  bool divergence_said_ = false;
  // finish(): the outputs being written, and the io_context kept running meanwhile.
  std::future<void> writer_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> writing_;
};

// The server's Transport (network/transport.h): a frame for worker w goes to the connection that
// holds its slot now; a lost worker's frames go nowhere, and a replacement still loading gets its
// start from on_rejoined().
class Server::WorkerTransport final : public Transport {
 public:
  explicit WorkerTransport(Server& server) : Transport(server.spec_.node_count), server_(server) {}

 protected:
  void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) override;

 private:
  Server& server_;
};

}  // namespace psgd
