#pragma once
// The TCP driver of a worker (experiments/client/client.h). Private to experiments/client/:
// connect.cc dials, joins, rejoins and leaves, driver.cc loads and drives the role, peers.cc links
// up with the other workers.
// Threading: everything on the io_context's thread, except the loading of the worker's data and
// model and the Gloo rendezvous, which run on a thread of their own (background()) so that the
// links keep their heartbeats while they take, and a role's detached computation, which runs on
// the compute thread (compute_thread.h) while the links deliver ring hops and heartbeats.
#include <asio.hpp>

#include <atomic>
#include <chrono>

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "core/clock.h"
#include "core/collective.h"
#include "core/error.h"
#include "experiments/cli.h"
#include "experiments/client/compute_thread.h"
#include "experiments/client/worker_data.h"
#include "experiments/local_data.h"
#include "experiments/worker_results.h"
#include "experiments/worker_setup.h"
#include "network/backoff.h"
#include "network/handshake.h"
#include "network/tcp/connection.h"
#include "network/tcp/peer_mesh.h"
#include "network/transport.h"
#include "nn/gloo_allreduce.h"

namespace psgd {

// The allreduce role is built before a blocking backend's group exists (the group forms after
// the peer table): it holds this, which forwards to the group once it is joined.
class JoinedCollective final : public Collective {
 public:
  explicit JoinedCollective(std::string backend) : backend_(std::move(backend)) {}
  void allreduce_sum(std::span<float> data) override {
    PSGD_CHECK(group != nullptr, "allreduce before the group was joined");
    group->allreduce_sum(data);
  }
  void allreduce_scaled(std::span<const float> in, std::span<float> out, float scale) override {
    PSGD_CHECK(group != nullptr, "allreduce before the group was joined");
    group->allreduce_scaled(in, out, scale);
  }
  std::uint64_t peer_bytes(std::uint64_t bytes, int world) const override {
    return group ? group->peer_bytes(bytes, world) : Collective::peer_bytes(bytes, world);
  }
  std::string name() const override { return backend_; }
  bool interruptible() const override { return group != nullptr && group->interruptible(); }
  std::unique_ptr<nn::GlooStoreHost> store;  // gloo: worker 0's rendezvous
  std::unique_ptr<Collective> group;         // nn::GlooAllreduce or net::ShmAllreduce

 private:
  std::string backend_;
};

// What outlives one Client (a join of a job) when the server is lost mid-job and the worker
// redials: the job it joined, and how often it has reconnected.
struct ClientSession {
  std::string job_id;  // empty until a server sent this worker a job
  int reconnects = 0;
  std::optional<net::AuthKey> key;  // loaded once (standard input is read once): --serve
  double wait_s = 0;                // how long to dial before the job: --connect_timeout, or
                                    // --serve_timeout between a resident worker's jobs (0: ever)
  // --serve: why the last attempt without a job ended. The same refusal again (a full server, a
  // wrong passphrase) is not printed again, nor the "waiting for a job" line before it.
  std::string last_refusal;
};

class Client {
 public:
  Client(const ClientOptions& options, ClientSession& session);
  ~Client();

  int run();
  // The connection to the server broke after this worker got its job (not a refusal, not
  // Finish, not a signal): run_client() may redial and rejoin the same job.
  bool lost_server() const { return lost_server_; }
  // The signal that stopped this worker (0: none), and whether it got a job.
  int signalled() const { return signalled_; }
  bool had_job() const { return worker_ >= 0; }

 private:
  // The worker's Transport: the server over its connection, peers over the peer mesh.
  class Links final : public Transport {
   public:
    Links(Client& c, int node_count) : Transport(node_count), c_(c) {}

   protected:
    void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) override {
      if (to == kServer) {
        c_.conn_->send_frame(frame);
        return;
      }
      PSGD_CHECK(c_.mesh_ != nullptr, "peer-to-peer messages need a peer transport");
      c_.mesh_->send(to, frame);
    }

   private:
    Client& c_;
  };

  // Connecting: dial (asynchronously, so a signal ends it at once), then the handshake. Any
  // failure before the job arrives (refused, reset, closed by a full or dying server, silence) is
  // retried with backoff and jitter until --connect_timeout has passed.
  void dial();
  void on_connected(asio::ip::tcp::socket socket);
  // `connected`: the attempt had reached the server (said as it is retried).
  void retry(const std::string& why, bool connected);
  // Runs `work` on a thread of its own, then `done` on the io_context's thread (unless the
  // client has stopped meanwhile). One at a time; the destructor waits for it.
  void background(std::function<void()> work, std::function<void()> done);
  void on_signal(int sig);
  void on_frame(Message&& message, NodeId from, std::size_t bytes);
  void on_handshake(const Message& message);
  void on_error(const std::string& why);
  void on_job(const Job& job);
  void on_data_chunk(const DataChunk& chunk);
  // local_data.cc (--local_data): read this worker's own file and report it (LocalData), then
  // build the worker once the server's LocalPlan fixes the schedule.
  void start_local();
  void on_local_plan(const LocalPlan& plan);
  // Normalises this worker's samples (raw, in Job order) and builds the worker (on the loading
  // thread), then ready() says Ready.
  void start_with(nn::Dataset samples);
  void build_worker(nn::Dataset samples);
  void ready();
  void on_finish(const Finish& finish);
  // A strategy message from the server or a peer: hand it to the role, compute while it asks.
  void deliver(const Message& message);
  // The next compute step, on a later turn of the event loop; `detached`: its computation on the
  // compute thread first (WorkerAction::detached).
  void compute_next(bool detached);
  // compute_step(), its messages, and the next step if it asks for one.
  void step();
  // Everything this worker has sent and received so far, over every link.
  LinkTraffic traffic() const;
  // Checkpoints: this worker's state to the server (StateRequest), and for peer-to-peer
  // strategies unasked, with the parameters, when its iterations reach a checkpoint.
  void send_state(bool with_params = false);
  void offer_state();
  // Peer-to-peer strategies: link up with the other workers, then tell the server.
  void on_peer_table(const PeerTable& table);
  void on_peer_error(int peer, const std::string& why);
  // --allreduce_on_loss shrink: a ring without the lost peers ends the wait for the verdict.
  void on_ring_reform(const RingReform& reform);
  void give_up(const std::string& why, bool tell_server);
  // A line of this worker's output: printed (stdout, or stderr for `error`) and kept for the
  // run directory's workers/<id>/log.txt.
  void say(const std::string& line, bool error = false);
  // Results come home (experiments/worker_results.h): the log and trace not sent yet, as
  // WorkerLog pieces; about once a second from the Job on, and all of it (`last`) when the
  // server asks at the end or this worker gives up or leaves.
  void send_results(bool last);
  void arm_results_timer();

  ClientOptions opts_;
  ClientSession& session_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer retry_timer_;    // the wait before the next attempt
  asio::steady_timer connect_timer_;  // an attempt that neither connects nor fails
  asio::steady_timer peer_grace_;     // a lost peer: the wait for the server's verdict
  asio::steady_timer abandon_timer_;  // abandon_stuck_collective()
  asio::steady_timer results_timer_;  // the next WorkerLog piece
  WorkerLogOutbox results_;           // log lines and trace rows not sent yet
  bool results_done_ = false;         // the last piece has been sent
  net::Backoff backoff_;
  std::string last_retry_why_;  // said once: the same failure again is retried without a line
  std::optional<net::AuthKey> key_;
  double dial_deadline_ = 0;  // when the current run of connection attempts gives up
  std::unique_ptr<asio::ip::tcp::socket> dialing_;
  std::shared_ptr<net::Connection> conn_;
  std::unique_ptr<net::ClientHandshake> handshake_;
  JobSpec spec_;
  int worker_ = -1;
  Job job_;                                    // the job, kept while data is being shipped
  std::shared_ptr<const std::string> script_;  // --model script:FILE: the file the server sent
  std::unique_ptr<WorkerData> data_;
  std::unique_ptr<LocalFile> local_;  // --local_data: its own file, until LocalPlan
  std::int64_t samples_ = 0;          // the samples this worker trains on
  double ship_start_ = 0;
  std::string data_sha256_;  // nn::content_hash of its samples as read (Ready::data_sha256)
  int threads_ = 1;
  // How long the event loop polls before it sleeps (--busy_poll_us; network/tcp/event_loop.h).
  std::chrono::microseconds poll_window_{0};
  int peer_port_ = 0;
  std::unique_ptr<WorkerParts> parts_;  // trainer, straggler, role (experiments/worker_setup.h)
  WorkerRole* role_ = nullptr;
  std::unique_ptr<Links> links_;
  Schedule schedule_;
  std::unique_ptr<net::PeerMesh> mesh_;  // --psgd allreduce --allreduce_backend ring
  // --psgd allreduce --allreduce_backend gloo or shm: the blocking group
  std::unique_ptr<JoinedCollective> collective_;
  SteadyClock clock_;
  ProcessCpuClock cpu_clock_;  // how long this worker's steps kept it busy (--slowdown)
  double start_ = 0;
  std::int64_t offered_iterations_ = 0;  // iterations_done() at the last offer_state()
  bool done_ = false;
  bool training_ = false;
  bool lost_server_ = false;
  bool peer_grace_armed_ = false;  // a peer was lost; waiting for the server's verdict
  std::set<int> lost_peers_;       // --allreduce_on_loss shrink: peers whose links failed
  std::set<int> ring_members_;     // the ring since the last RingReform (empty: every worker)
  int exit_code_ = 1;
  int signalled_ = 0;
  // Detached computation (allreduce --overlap, and every step of allreduce on gloo or shm):
  // started when first needed; destroyed (joined) before the role and the trainer it computes
  // with, and before collective_.
  std::unique_ptr<ComputeThread> compute_;
  // The run is over for this worker (set with compute_->stop()): ends a wait in the shm group
  // (its join on the loading thread, its allreduces on the compute thread).
  std::shared_ptr<std::atomic<bool>> run_over_ = std::make_shared<std::atomic<bool>>(false);
  void stop_computing() {
    run_over_->store(true);
    if (compute_) compute_->stop();
    abandon_stuck_collective();
  }
  // A collective that cannot be interrupted (Gloo's): once the run is over, a compute thread still
  // inside one (a peer stopped, not dead) would hold this process until --io_timeout. A one-job
  // client exits instead when it is still there 2 s later (a resident one, --serve, waits it out).
  void abandon_stuck_collective();
  // Loading in the background (last member: destroyed, i.e. waited for, first).
  bool loading_ = false;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> loading_guard_;
  std::future<void> loader_;
};

}  // namespace psgd
