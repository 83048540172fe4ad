#include "experiments/server.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <asio.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <set>

#include "core/clock.h"
#include "core/error.h"
#include "core/rng.h"
#include "experiments/data_shipping.h"
#include "experiments/format.h"
#include "experiments/job_plan.h"
#include "experiments/provenance.h"
#include "experiments/recorder.h"
#include "experiments/run_dir.h"
#include "experiments/tensorboard.h"
#include "experiments/timeline.h"
#include "network/auth.h"
#include "network/tcp/connection.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"
#include "nn/normalize.h"
#include "nn/partition.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "psgd/checkpoint.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

using asio::ip::tcp;

// Limit for frames a worker may send until the job is known (then training_frame_limit,
// network/frame.h).
constexpr std::uint64_t kHandshakeFrameLimit = 64 * 1024;
// A peer must finish authenticating within this time, and at most this many may be trying at
// once (more are closed at once), so idle or hostile connections cannot pile up.
constexpr double kAuthSeconds = 10;
constexpr std::size_t kMaxPending = 256;

std::string fmt_bytes(double bytes) {
  return bytes >= 1 << 20 ? fmt::format("{:.1f} MiB", bytes / (1 << 20))
                          : fmt::format("{:.1f} KiB", bytes / 1024);
}

enum class Phase { kJoining, kLoading, kTraining, kDone };

// A connection that has not completed the handshake (network/auth.h) and its Hello.
struct Handshake {
  enum class Stage { kAuthHello, kAuthProof, kHello } stage = Stage::kAuthHello;
  std::vector<std::uint8_t> worker_nonce;
  std::vector<std::uint8_t> server_nonce;
  std::string identity;
};

struct WorkerSlot {
  std::shared_ptr<net::Connection> conn;
  bool lost = false;  // died during training; the strategy carried on without it
  Hello hello;
  bool ready = false;
  std::string host;                   // host name as the worker reported it
  std::vector<std::int64_t> samples;  // indices into the training set as loaded
  bool offered = false;               // --ship_data: its DataOffer has arrived
  std::string address;                // IP address the worker connected from
  int peer_port = 0;                  // peer-to-peer strategies: where it accepts peer links
  bool peers_up = false;              // peer-to-peer strategies: its PeersUp has arrived
  // A new client taking over this lost slot during training; it is loading its data and is
  // sent nothing of the strategy's until its Ready.
  bool rejoining = false;
  Traffic traffic_before;  // bytes of this slot's earlier connections (a lost worker's)
};

class Server {
 public:
  explicit Server(const ServerOptions& options)
      : opts_(options),
        spec_(opts_.spec),
        join_timer_(io_),
        progress_timer_(io_),
        shutdown_timer_(io_),
        signals_(io_, SIGINT, SIGTERM),
        workers_(static_cast<std::size_t>(spec_.node_count)) {}

  int run();

 private:
  void prepare();
  void listen();
  void accept(tcp::acceptor& acceptor);
  void on_frame(const std::shared_ptr<net::Connection>& conn, Message&& message);
  void on_connection_error(const std::shared_ptr<net::Connection>& conn, const std::string& why);
  void on_handshake(const std::shared_ptr<net::Connection>& conn, Handshake& hs,
                    const Message& message);
  void on_hello(const std::shared_ptr<net::Connection>& conn, const Hello& hello);
  void on_worker_lost(int worker, const std::string& why);
  // A client that authenticated during training: it takes over a lost worker's slot.
  void take_over(const std::shared_ptr<net::Connection>& conn, const Hello& hello);
  void on_rejoined(int worker);
  // A replacement that failed before it was ready: its slot is lost again, the run goes on.
  void drop_replacement(int worker, const std::string& why);
  Job make_job(std::size_t worker, int threads) const;
  void offer_shared_memory(net::Connection& conn);
  int worker_threads(const WorkerSlot& worker) const;
  void record_lost(int worker, const std::string& why, bool carried_on);
  void send_jobs();
  void on_ready(int worker, const Ready& ready);
  void on_data_offer(int worker, const DataOffer& offer);
  bool needs_peers() const { return strategy_of(spec_).topology == Topology::kPeerToPeer; }
  void send_peer_table();
  void on_peers_up(int worker);
  void start_training();
  void on_training_message(int worker, const Message& message);
  void dispatch(const Outbox& out);
  void arm_progress_timer();
  // --resume: reads and checks the checkpoint, puts its parameters into the model.
  void load_checkpoint();
  CheckpointHeader checkpoint_header() const;
  // --checkpoint_every: after an update that ended an epoch or completed a period.
  void maybe_checkpoint(std::int64_t iteration_before, int epochs_before);
  void fail(const std::string& why, int exit_code = 1);
  void finish(const std::string& status, bool ok);
  int worker_of(const net::Connection* conn) const;
  int joined() const;
  nlohmann::json config_json() const;

  ServerOptions opts_;
  JobSpec& spec_;
  asio::io_context io_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  asio::steady_timer join_timer_;
  asio::steady_timer progress_timer_;
  asio::steady_timer shutdown_timer_;
  asio::signal_set signals_;
  std::optional<net::AuthKey> key_;  // --passphrase_file / $PSGD_PASSPHRASE
  // Connected, no Hello yet; each Handshake is shared with its connection's type filter.
  std::map<std::shared_ptr<net::Connection>, std::shared_ptr<Handshake>> pending_;
  std::vector<WorkerSlot> workers_;
  Phase phase_ = Phase::kJoining;

  std::unique_ptr<JobPlan> plan_;  // data, normaliser, hold-out, placement, schedule
  std::uint64_t data_bytes_ = 0;
  double ship_start_ = -1;
  double data_seconds_ = 0;
  std::unique_ptr<nn::Trainer> model_;
  // Evaluates a copy of the parameters at each epoch end on its own thread, so training goes on
  // meanwhile (RunRecorder's evaluate_async); one evaluation at a time.
  std::unique_ptr<nn::Trainer> eval_model_;
  std::shared_future<EvalStats> evaluating_;
  std::shared_future<EvalStats> evaluate_in_background(std::span<const float> parameters);
  Schedule schedule_;
  std::unique_ptr<ServerRole> role_;
  std::unique_ptr<RunDirectory> run_;
  std::vector<int> ports_;

  std::unique_ptr<RunRecorder> recorder_;
  std::unique_ptr<TimelineRecorder> timeline_;      // --timeline
  std::unique_ptr<ObserverFanout> observers_;       // recorder + timeline
  std::unique_ptr<TensorBoardWriter> tensorboard_;  // --tensorboard
  SteadyClock clock_;
  nlohmann::json events_ = nlohmann::json::array();  // summary.json "events": lost workers
  std::optional<Checkpoint> resumed_;                // --resume: the checkpoint continued from
  int checkpoints_written_ = 0;
  int exit_code_ = 1;
};

int Server::run() {
  key_ = net::load_key(opts_.passphrase_file);
  prepare();
  listen();
  signals_.async_wait([this](std::error_code ec, int sig) {
    if (ec) return;
    fail(fmt::format("interrupted by signal {}", sig), 128 + sig);
  });
  join_timer_.expires_after(seconds(spec_.join_timeout));
  join_timer_.async_wait([this](std::error_code ec) {
    if (ec || phase_ == Phase::kTraining || phase_ == Phase::kDone) return;
    const int ready = static_cast<int>(
        std::count_if(workers_.begin(), workers_.end(), [](const auto& w) { return w.ready; }));
    fail(phase_ == Phase::kJoining
             ? fmt::format("only {} of {} workers joined within --join_timeout {} s; start each "
                           "with: client --ip <this host> --port {}",
                           joined(), spec_.node_count, spec_.join_timeout, ports_.front())
             : fmt::format("only {} of {} workers were ready within --join_timeout {} s", ready,
                           spec_.node_count, spec_.join_timeout));
  });
  io_.run();
  return exit_code_;
}

void Server::prepare() {
  nn::set_compute_threads(1);
  for (const std::string& note : opts_.notes)
    fmt::print("init_server: {}\n", note);
  plan_ = std::make_unique<JobPlan>(spec_);
  fmt::print("init_server: {}\ninit_server: {}\n", nn::describe(*plan_->train()),
             nn::describe(plan_->evaluation()->test));
  if (!plan_->holdout().validation.empty()) {
    fmt::print("init_server: {} (held out of the training set)\n",
               nn::describe(plan_->evaluation()->validation));
  }
  model_ = plan_->make_model();
  schedule_ = plan_->schedule();
  fmt::print(
      "init_server: {}; {} {} with codec {}, {} workers x batch {}, {} iterations per epoch\n",
      model_->describe(), spec_.psgd, spec_.block_assignment, spec_.codec, spec_.node_count,
      spec_.batch_size, schedule_.iterations_per_epoch);
  // Created only once the data and the model are known to work, so a bad flag leaves no debris.
  const std::string dir = spec_.output.empty() ? default_run_dir(spec_) : spec_.output;
  if (!opts_.resume.empty()) load_checkpoint();
  run_ = resumed_ ? std::make_unique<RunDirectory>(dir, resumed_->epochs_done)
                  : std::make_unique<RunDirectory>(dir);
  recorder_ = std::make_unique<RunRecorder>(RecorderSetup{
      .spec = &spec_,
      .schedule = schedule_,
      .dir = run_.get(),
      .model = model_.get(),
      .wall = &clock_,
      .evaluate_async =
          [this](std::span<const float> parameters) { return evaluate_in_background(parameters); },
      .traffic =
          [this](int w) {
            const auto& slot = workers_[static_cast<std::size_t>(w)];
            Traffic t = slot.traffic_before;
            if (slot.conn) {
              t.up += slot.conn->bytes_received();
              t.down += slot.conn->bytes_sent();
            }
            return t;
          },
      .average_decay = spec_.model_average_decay()});
  if (opts_.tensorboard) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(run_->file("tensorboard"));
    recorder_->set_epoch_listener(
        [this](const MetricsRow& row, const std::vector<WorkerRow>& workers) {
          tensorboard_->add_scalars(row.epoch, epoch_scalars(row, workers));
        });
  }
  if (resumed_) {
    // config.json stays as the first start wrote it; the resume is recorded in summary.json.
    try {
      const auto state = nlohmann::json::parse(resumed_->driver_state);
      recorder_->resume(state.at("recorder"));
      events_ = state.at("events");
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError(
          fmt::format("--resume {}: checkpoint corrupt: recorder state: {}", dir, e.what()));
    }
    events_.push_back({{"event", "resumed"},
                       {"iteration", resumed_->iteration},
                       {"epoch", resumed_->epochs_done},
                       {"command_line", opts_.command_line}});
    fmt::print("init_server: resuming {} from its checkpoint at iteration {} (epoch {} of {})\n",
               dir, resumed_->iteration, resumed_->epochs_done, spec_.epochs);
    return;
  }
  run_->write_config(config_json());
}

CheckpointHeader Server::checkpoint_header() const {
  return CheckpointHeader{.model = spec_.model,
                          .num_parameters = model_->num_parameters(),
                          .config_hash = job_config_hash(spec_),
                          .strategy = spec_.psgd};
}

void Server::load_checkpoint() {
  const std::string path = spec_.output + "/" + kCheckpointFile;
  try {
    Checkpoint c = decode_checkpoint(read_checkpoint_file(path));
    check_matches(c, checkpoint_header());
    if (c.worker_batches.size() != static_cast<std::size_t>(spec_.node_count)) {
      throw CheckpointError(fmt::format("checkpoint has {} workers, the job {}",
                                        c.worker_batches.size(), spec_.node_count));
    }
    // The strategy must accept its state before any worker is asked to join.
    std::vector<float> scratch(c.parameters);
    SteadyClock clock;
    make_server_role(spec_, schedule_,
                     ServerContext{.parameters = scratch,
                                   .sgd = sgd_options(spec_),
                                   .uplink = uplink_codec_spec(spec_, 0),
                                   .downlink = downlink_codec_spec(spec_),
                                   .clock = &clock})
        ->restore(c.role_state);
    nlohmann::json::parse(c.driver_state).at("recorder").at("epoch");
    auto params = model_->parameters();
    std::copy(c.parameters.begin(), c.parameters.end(), params.begin());
    resumed_ = std::move(c);
  } catch (const CheckpointError& e) {
    throw ConfigError(fmt::format("--resume {}: {}", path, e.what()));
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("--resume {}: {}", path, e.what()));
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("--resume {}: checkpoint corrupt: {}", path, e.what()));
  }
}

std::shared_future<EvalStats> Server::evaluate_in_background(std::span<const float> parameters) {
  if (evaluating_.valid()) evaluating_.wait();
  if (!eval_model_) eval_model_ = plan_->make_model();
  PSGD_CHECK_EQ(parameters.size(), eval_model_->parameters().size(), "evaluating another model");
  std::copy(parameters.begin(), parameters.end(), eval_model_->parameters().begin());
  evaluating_ =
      std::async(std::launch::async, [m = eval_model_.get()] { return m->evaluate(); }).share();
  return evaluating_;
}

void Server::maybe_checkpoint(std::int64_t iteration_before, int epochs_before) {
  const std::int64_t every = spec_.checkpoint_every;
  const std::int64_t it = role_->iteration();
  if (every <= 0 || it == iteration_before || role_->finished()) return;
  const bool epoch_end = recorder_->epochs_done() != epochs_before;
  if (!epoch_end && it / every == iteration_before / every) return;
  const double t0 = clock_.now();
  recorder_->write_evaluated(/*wait=*/true);  // the checkpoint holds the rows written so far
  Checkpoint c{
      .header = checkpoint_header(),
      .iteration = it,
      .epochs_done = recorder_->epochs_done(),
      .role_state = role_->snapshot(),
      .driver_state =
          nlohmann::json{{"recorder", recorder_->snapshot(it)}, {"events", events_}}.dump()};
  const auto params = model_->parameters();
  c.parameters.assign(params.begin(), params.end());
  for (int w = 0; w < spec_.node_count; ++w)
    c.worker_batches.push_back(role_->worker_batches(w));
  try {
    write_checkpoint_file(run_->file(kCheckpointFile), encode_checkpoint(c));
  } catch (const IoError& e) {
    fail(fmt::format("cannot write the checkpoint: {}", e.what()));
    return;
  }
  ++checkpoints_written_;
  spdlog::info("checkpoint at iteration {} (epoch {}) in {}", it, c.epochs_done,
               fmt_duration(clock_.now() - t0));
  if (opts_.crash_after_checkpoints > 0 && checkpoints_written_ == opts_.crash_after_checkpoints) {
    fmt::print(stderr, "init_server: --crash_after_checkpoints {}: killing this server\n",
               checkpoints_written_);
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
}

void Server::listen() {
  if (opts_.bind.empty()) opts_.bind = key_ ? "0.0.0.0" : "127.0.0.1";
  std::error_code bad_address;
  const auto address = asio::ip::make_address(opts_.bind, bad_address);
  if (bad_address) throw ConfigError(fmt::format("--bind {}: not an IP address", opts_.bind));
  if (!key_ && !address.is_loopback()) {
    fmt::print(stderr,
               "init_server: WARNING: listening on {} without a passphrase: anyone who can reach "
               "this port can join the job or send it data; give --passphrase_file or "
               "${}\n",
               opts_.bind, net::kPassphraseEnv);
  }
  for (int port : spec_.working_ports) {
    auto acceptor = std::make_unique<tcp::acceptor>(io_);
    std::error_code ec;
    tcp::endpoint ep(address, static_cast<unsigned short>(port));
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw IoError(
          fmt::format("cannot listen on {}:{}: {} (is another init_server using it? "
                      "choose another --working_ports)",
                      opts_.bind, port, ec.message()));
    }
    ports_.push_back(acceptor->local_endpoint().port());
    acceptors_.push_back(std::move(acceptor));
  }
  for (auto& a : acceptors_)
    accept(*a);
  if (!opts_.port_file.empty()) write_file_atomic(opts_.port_file, fmt::format("{}\n", ports_[0]));
  fmt::print(
      "init_server: listening on {}:{}{}; waiting for {} workers (start each with: client "
      "--ip <this host> --port {})\n",
      opts_.bind, fmt::join(ports_, ","),
      key_ ? " (workers must prove the passphrase)" : " (no passphrase)", spec_.node_count,
      ports_.front());
  std::fflush(stdout);
}

void Server::accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([this, &acceptor](std::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted && phase_ != Phase::kDone) {
        spdlog::warn("accept failed: {}", ec.message());
        accept(acceptor);
      }
      return;
    }
    if (phase_ == Phase::kDone) return;
    if (pending_.size() >= kMaxPending) {
      spdlog::warn("{} connections are already authenticating; closing a new one", pending_.size());
      std::error_code ignored;
      socket.close(ignored);
      accept(acceptor);
      return;
    }
    auto conn = std::make_shared<net::Connection>(
        std::move(socket),
        net::ConnectionOptions{.max_body_bytes = net::kAuthFrameLimit,
                               .read_timeout_s = std::min(kAuthSeconds, spec_.join_timeout)});
    auto hs = std::make_shared<Handshake>();
    pending_.emplace(conn, hs);
    // Until the handshake is done only its next frame is read; anything else closes the link
    // before its body is read.
    conn->set_type_filter([hs](MessageType t) {
      switch (hs->stage) {
        case Handshake::Stage::kAuthHello:
          return t == MessageType::kAuthHello;
        case Handshake::Stage::kAuthProof:
          return t == MessageType::kAuthProof;
        case Handshake::Stage::kHello:
          return t == MessageType::kHello;
      }
      return false;
    });
    std::weak_ptr<net::Connection> weak = conn;
    conn->start(
        [this, weak](Message&& m, std::size_t) {
          if (auto c = weak.lock()) on_frame(c, std::move(m));
        },
        [this, weak](const std::string& why) {
          if (auto c = weak.lock()) on_connection_error(c, why);
        });
    accept(acceptor);
  });
}

int Server::worker_of(const net::Connection* conn) const {
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    if (workers_[w].conn.get() == conn) return static_cast<int>(w);
  }
  return -1;
}

int Server::joined() const {
  return static_cast<int>(
      std::count_if(workers_.begin(), workers_.end(), [](const auto& w) { return w.conn; }));
}

void Server::on_frame(const std::shared_ptr<net::Connection>& conn, Message&& message) {
  if (phase_ == Phase::kDone) return;
  if (auto it = pending_.find(conn); it != pending_.end()) {
    auto hs = it->second;  // on_handshake may erase the entry
    on_handshake(conn, *hs, message);
    return;
  }
  const int w = worker_of(conn.get());
  if (w < 0) return;
  if (workers_[w].rejoining && !std::holds_alternative<Ready>(message) &&
      !std::holds_alternative<DataOffer>(message)) {
    drop_replacement(w, fmt::format("sent {} while loading", type_name(type_of(message))));
    return;
  }
  if (const auto* err = std::get_if<ErrorMessage>(&message)) {
    fail(fmt::format("worker {} ({}) gave up: {}", w, workers_[w].host, err->text));
    return;
  }
  if (const auto* ready = std::get_if<Ready>(&message)) {
    on_ready(w, *ready);
    return;
  }
  if (const auto* offer = std::get_if<DataOffer>(&message)) {
    on_data_offer(w, *offer);
    return;
  }
  if (std::holds_alternative<PeersUp>(message)) {
    on_peers_up(w);
    return;
  }
  if (phase_ != Phase::kTraining) {
    fail(fmt::format("worker {} sent {} before training started", w, type_name(type_of(message))));
    return;
  }
  on_training_message(w, message);
}

void Server::on_connection_error(const std::shared_ptr<net::Connection>& conn,
                                 const std::string& why) {
  if (pending_.erase(conn)) {
    spdlog::warn("dropped a connection before it authenticated and said Hello: {}", why);
    return;
  }
  const int w = worker_of(conn.get());
  if (w < 0 || phase_ == Phase::kDone) return;
  if (phase_ == Phase::kJoining) {
    spdlog::warn("worker {} ({}) left before the job started: {}", w, workers_[w].host, why);
    workers_[w] = WorkerSlot{};
    return;
  }
  if (phase_ == Phase::kTraining && workers_[w].rejoining) {
    drop_replacement(w, why);
    return;
  }
  if (phase_ == Phase::kTraining) {
    on_worker_lost(w, why);
    return;
  }
  fail(fmt::format("lost worker {} ({}): {}", w, workers_[w].host, why));
}

void Server::on_worker_lost(int w, const std::string& why) {
  auto& slot = workers_[static_cast<std::size_t>(w)];
  const std::string what = fmt::format("lost worker {} ({}): {}", w, slot.host, why);
  Outbox out;
  if (!role_->on_worker_lost(w, out)) {
    record_lost(w, why, false);
    fail(fmt::format("{}; {} cannot continue without it{}", what, spec_.psgd,
                     strategy_of(spec_).on_loss_hint));
    return;
  }
  fmt::print(stderr, "init_server: {}; {} carries on with the other workers\n", what, spec_.psgd);
  std::fflush(stderr);
  record_lost(w, why, true);
  slot.traffic_before.up += slot.conn->bytes_received();
  slot.traffic_before.down += slot.conn->bytes_sent();
  slot.conn.reset();
  slot.lost = true;
  dispatch(out);
  if (std::all_of(workers_.begin(), workers_.end(), [](const auto& s) { return s.lost; })) {
    fail("every worker was lost");
    return;
  }
  if (role_->finished()) finish("completed", true);
}

void Server::take_over(const std::shared_ptr<net::Connection>& conn, const Hello& hello) {
  auto slot = std::find_if(workers_.begin(), workers_.end(),
                           [](const WorkerSlot& s) { return s.lost && !s.conn; });
  if (slot == workers_.end()) {
    spdlog::warn("refused {}: training, and no worker slot is free", conn->peer());
    conn->send(ErrorMessage{fmt::format(
        "this job already has its {} workers (during training a client can join only to "
        "replace a lost one)",
        spec_.node_count)});
    conn->close_after_writes();
    return;
  }
  const int w = static_cast<int>(slot - workers_.begin());
  slot->conn = conn;
  slot->hello = hello;
  slot->host = hello.host;
  slot->address = conn->peer().substr(0, conn->peer().rfind(':'));
  slot->rejoining = true;
  slot->ready = false;
  slot->offered = false;
  const Job job = make_job(static_cast<std::size_t>(w), worker_threads(*slot));
  fmt::print(
      "init_server: {} (pid {}) takes over lost worker {}'s slot: its data, continuing after "
      "batch {}\n",
      hello.host, hello.pid, w, job.start_batch);
  std::fflush(stdout);
  conn->set_max_body_bytes(training_frame_limit(model_->num_parameters()));
  conn->set_read_timeout(spec_.join_timeout);
  offer_shared_memory(*conn);
  conn->send(job);
}

void Server::on_rejoined(int w) {
  auto& slot = workers_[static_cast<std::size_t>(w)];
  Outbox out;
  if (!role_->on_worker_rejoined(w, out)) {
    drop_replacement(w, fmt::format("{} cannot take a replacement worker", spec_.psgd));
    return;
  }
  slot.rejoining = false;
  slot.lost = false;
  slot.ready = true;
  slot.conn->set_read_timeout(opts_.dead_after);
  slot.conn->start_heartbeats(opts_.heartbeat_interval);
  events_.push_back({{"event", "worker_rejoined"},
                     {"worker", w},
                     {"host", slot.host},
                     {"pid", slot.hello.pid},
                     {"iteration", role_->iteration()},
                     {"wall_s", clock_.now()}});
  fmt::print("init_server: worker {} is back ({}, pid {}) at iteration {}\n", w, slot.host,
             slot.hello.pid, role_->iteration());
  std::fflush(stdout);
  dispatch(out);
}

void Server::drop_replacement(int w, const std::string& why) {
  auto& slot = workers_[static_cast<std::size_t>(w)];
  spdlog::warn("the replacement for worker {} ({}) is dropped: {}", w, slot.host, why);
  if (slot.conn) {
    slot.traffic_before.up += slot.conn->bytes_received();
    slot.traffic_before.down += slot.conn->bytes_sent();
    slot.conn->send(ErrorMessage{why});
    slot.conn->close_after_writes();
    slot.conn.reset();
  }
  slot.rejoining = false;
  slot.ready = false;
}

void Server::record_lost(int w, const std::string& why, bool carried_on) {
  events_.push_back({{"event", "worker_lost"},
                     {"worker", w},
                     {"host", workers_[static_cast<std::size_t>(w)].host},
                     {"iteration", role_->iteration()},
                     {"wall_s", clock_.now()},
                     {"why", why},
                     {"carried_on", carried_on}});
}

void Server::on_handshake(const std::shared_ptr<net::Connection>& conn, Handshake& hs,
                          const Message& message) {
  auto refuse = [&](const std::string& why) {
    spdlog::warn("refused {}{}: {}", conn->peer(),
                 hs.identity.empty() ? "" : fmt::format(" ({})", hs.identity), why);
    pending_.erase(conn);
    conn->send(ErrorMessage{why});
    conn->close_after_writes();
  };
  if (const auto* a = std::get_if<AuthHello>(&message)) {
    if (a->protocol != kProtocolVersion) {
      refuse(
          fmt::format("this server speaks psgd protocol v{}, the client v{}; run the same psgd "
                      "version everywhere",
                      kProtocolVersion, a->protocol));
      return;
    }
    if (a->nonce.size() != net::kAuthNonceBytes) {
      refuse(fmt::format("AuthHello nonce of {} bytes", a->nonce.size()));
      return;
    }
    hs.identity = a->identity;
    if (key_ && !a->has_key) {
      refuse(
          fmt::format("this server requires a passphrase: start the client with "
                      "--passphrase_file FILE or ${}",
                      net::kPassphraseEnv));
      return;
    }
    hs.worker_nonce = a->nonce;
    hs.server_nonce = net::make_nonce();
    AuthChallenge challenge{.nonce = hs.server_nonce, .required = key_.has_value()};
    if (key_) {
      challenge.proof = net::auth_proof(*key_, net::AuthRole::kServer, kProtocolVersion,
                                        hs.worker_nonce, hs.server_nonce, hs.identity);
    }
    hs.stage = Handshake::Stage::kAuthProof;
    conn->send(challenge);
    return;
  }
  if (const auto* p = std::get_if<AuthProof>(&message)) {
    const bool ok = key_ ? net::check_proof(*key_, net::AuthRole::kWorker, kProtocolVersion,
                                            hs.worker_nonce, hs.server_nonce, hs.identity, p->proof)
                         : p->proof.empty();
    if (!ok) {
      refuse(key_ && p->proof.empty()
                 ? "authentication failed: wrong passphrase (the worker found this server's "
                   "proof wrong)"
                 : "authentication failed: wrong passphrase (the worker could not prove this "
                   "server's passphrase)");
      return;
    }
    hs.stage = Handshake::Stage::kHello;
    conn->set_max_body_bytes(kHandshakeFrameLimit);
    conn->send(AuthOk{});
    return;
  }
  if (const auto* hello = std::get_if<Hello>(&message)) {
    if (fmt::format("{}:{}", hello->host, hello->pid) != hs.identity) {
      refuse(fmt::format("Hello from {}:{} after authenticating as {}", hello->host, hello->pid,
                         hs.identity));
      return;
    }
    // Authenticated: from now on anything but the handshake's frames.
    conn->set_type_filter([](MessageType t) {
      return t != MessageType::kAuthHello && t != MessageType::kAuthProof &&
             t != MessageType::kHello;
    });
    on_hello(conn, *hello);
    return;
  }
  refuse(fmt::format("{} during the handshake", type_name(type_of(message))));
}

void Server::on_hello(const std::shared_ptr<net::Connection>& conn, const Hello& hello) {
  pending_.erase(conn);
  auto refuse = [&](const std::string& why) {
    spdlog::warn("refused {}: {}", conn->peer(), why);
    conn->send(ErrorMessage{why});
    conn->close_after_writes();
  };
  if (hello.protocol != kProtocolVersion) {
    refuse(
        fmt::format("this server speaks psgd protocol v{}, the client v{}; run the same "
                    "psgd version everywhere",
                    kProtocolVersion, hello.protocol));
    return;
  }
  if (phase_ == Phase::kTraining) {
    take_over(conn, hello);
    return;
  }
  if (phase_ != Phase::kJoining) {
    refuse(fmt::format("this job already has its {} workers", spec_.node_count));
    return;
  }
  auto free_slot =
      std::find_if(workers_.begin(), workers_.end(), [](const WorkerSlot& s) { return !s.conn; });
  if (free_slot == workers_.end()) {
    refuse(fmt::format("this job already has its {} workers", spec_.node_count));
    return;
  }
  free_slot->conn = conn;
  free_slot->hello = hello;
  free_slot->host = hello.host;
  free_slot->address = conn->peer().substr(0, conn->peer().rfind(':'));
  const int w = static_cast<int>(free_slot - workers_.begin());
  fmt::print("init_server: worker {} joined from {} ({}, pid {}{}) [{}/{}]\n", w, hello.host,
             conn->peer(), hello.pid,
             hello.slowdown != 1.0 ? fmt::format(", slowdown {}", hello.slowdown) : "", joined(),
             spec_.node_count);
  std::fflush(stdout);
  if (joined() == spec_.node_count) send_jobs();
}

// A worker on this machine gets a shared-memory channel for its large frames (it maps it only if
// it really is here, else the link stays on TCP).
void Server::offer_shared_memory(net::Connection& conn) {
  if (opts_.shared_memory != "on" || !conn.peer_on_this_host()) return;
  // Two slots per direction: every strategy has at most one large frame in flight each way per
  // worker, and the second slot lets the next one go out while the receiver still holds the last.
  conn.offer_shared_memory(net::fp32_frame_slot_bytes(model_->num_parameters()), /*slots=*/2);
}

// Torch threads for a worker (--threads, else its host's cores divided among the psgd processes
// there, this server's included: a worker whose threads fill every core would fight the server
// for them each round; with two threads and the server on two cores, a single worker runs at
// less than half its speed).
int Server::worker_threads(const WorkerSlot& worker) const {
  if (spec_.threads > 0) return spec_.threads;
  int on_host = worker.host == host_name() ? 1 : 0;
  for (const auto& s : workers_)
    on_host += s.conn && s.host == worker.host;
  return std::max(1, std::max(1, worker.hello.cores) / std::max(1, on_host));
}

Job Server::make_job(std::size_t w, int threads) const {
  const WorkerSetup setup = plan_->worker(static_cast<int>(w));
  Job job{.worker_id = static_cast<std::int32_t>(w),
          .spec_json = nlohmann::json(spec_).dump(),
          .samples = setup.samples,
          .threads = threads,
          .num_parameters = model_->num_parameters(),
          .data_hash = plan_->data_hash(),
          .norm_shift = setup.normalizer.shift,
          .norm_scale = setup.normalizer.scale,
          .train_size = setup.train_size,
          .block_ids = setup.block_ids,
          .block_sizes = setup.block_sizes};
  // A resumed run, or a slot taken over during training: continue that worker's batch order.
  if (role_) {
    job.start_batch = std::max<std::int64_t>(0, role_->worker_batches(static_cast<NodeId>(w)));
  } else if (resumed_) {
    job.start_batch = std::max<std::int64_t>(0, resumed_->worker_batches[w]);
  }
  return job;
}

void Server::send_jobs() {
  phase_ = Phase::kLoading;
  const std::size_t params = model_->num_parameters();
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    slot.samples = plan_->placement().samples_of(static_cast<int>(w));
    const Job job = make_job(w, worker_threads(slot));
    slot.conn->set_max_body_bytes(training_frame_limit(params));
    slot.conn->set_read_timeout(spec_.join_timeout);
    offer_shared_memory(*slot.conn);
    slot.conn->send(job);
  }
  fmt::print("init_server: all {} workers joined; they are loading their data\n", spec_.node_count);
  std::fflush(stdout);
  if (!resumed_) run_->write_config(config_json());
}

void Server::on_data_offer(int w, const DataOffer& offer) {
  auto& slot = workers_[static_cast<std::size_t>(w)];
  if ((phase_ != Phase::kLoading && !slot.rejoining) || !spec_.ship_data || slot.offered) {
    if (slot.rejoining) {
      drop_replacement(w, "sent DataOffer out of turn");
      return;
    }
    fail(fmt::format("worker {} sent DataOffer out of turn", w));
    return;
  }
  slot.offered = true;
  if (ship_start_ < 0) ship_start_ = clock_.now();
  const std::string& data_hash = plan_->data_hash();
  if (!offer.hash.empty() && offer.hash == data_hash) {
    fmt::print("init_server: worker {} holds the same training set (sha256 {}...); not shipping\n",
               w, data_hash.substr(0, 12));
    slot.conn->send(DataChunk{});
    return;
  }
  const double t0 = clock_.now();
  const auto pack = nn::pack_dataset(nn::subset(*plan_->train(), slot.samples, ""));
  std::uint64_t bytes = 0;
  std::size_t chunks = 0;
  for (auto& chunk : make_chunks(pack)) {
    auto frame =
        std::make_shared<const EncodedFrame>(std::make_shared<const Message>(std::move(chunk)));
    bytes += frame->size();
    ++chunks;
    slot.conn->send_frame(frame);
  }
  data_bytes_ += bytes;
  fmt::print(
      "init_server: shipping worker {} its {} samples: {} in {} chunk(s), {} compressed "
      "(packed in {})\n",
      w, slot.samples.size(), fmt_bytes(static_cast<double>(pack.size())), chunks,
      fmt_bytes(static_cast<double>(bytes)), fmt_duration(clock_.now() - t0));
  std::fflush(stdout);
}

void Server::on_ready(int w, const Ready& ready) {
  if (workers_[w].rejoining && phase_ == Phase::kTraining) {
    if (ready.num_parameters != model_->num_parameters()) {
      drop_replacement(w, fmt::format("built a model with {} parameters but the server's has {}",
                                      ready.num_parameters, model_->num_parameters()));
      return;
    }
    on_rejoined(w);
    return;
  }
  if (phase_ != Phase::kLoading || workers_[w].ready) {
    fail(fmt::format("worker {} sent Ready twice or out of turn", w));
    return;
  }
  if (ready.num_parameters != model_->num_parameters()) {
    fail(
        fmt::format("worker {} built a model with {} parameters but the server's has {}; run "
                    "the same psgd version everywhere",
                    w, ready.num_parameters, model_->num_parameters()));
    return;
  }
  workers_[w].ready = true;
  workers_[w].peer_port = ready.peer_port;
  if (needs_peers() && ready.peer_port <= 0 && (w == 0 || spec_.allreduce_backend == "ring")) {
    fail(fmt::format("worker {} opened no port for its peers; --psgd {} needs one", w, spec_.psgd));
    return;
  }
  if (spec_.ship_data && ship_start_ >= 0) {
    data_seconds_ = std::max(data_seconds_, clock_.now() - ship_start_);
  }
  fmt::print("init_server: worker {} ready: {} samples, {} thread(s), BLAS: {}\n", w,
             fmt_count(static_cast<double>(ready.samples)), ready.threads, ready.detail);
  std::fflush(stdout);
  if (std::all_of(workers_.begin(), workers_.end(), [](const auto& s) { return s.ready; })) {
    if (needs_peers()) {
      send_peer_table();
    } else {
      start_training();
    }
  }
}

// Peer-to-peer strategies: every worker learns where the others listen (for the gloo backend
// only worker 0's rendezvous store matters), links up, and says PeersUp; training starts when all
// have. The join timeout still runs, so a mesh that cannot form ends the run.
void Server::send_peer_table() {
  auto table = std::make_shared<const Message>([&] {
    PeerTable t;
    for (const auto& slot : workers_) {
      t.hosts.push_back(slot.address);
      t.ports.push_back(slot.peer_port);
    }
    t.key = net::make_nonce();  // this job's peer key (network/auth.h, peer_proof)
    return t;
  }());
  for (auto& slot : workers_)
    slot.conn->send(table);
  fmt::print("init_server: workers are linking up with each other ({} allreduce)\n",
             spec_.allreduce_backend);
  std::fflush(stdout);
}

void Server::on_peers_up(int w) {
  auto& slot = workers_[static_cast<std::size_t>(w)];
  if (phase_ != Phase::kLoading || !needs_peers() || slot.peers_up || !slot.ready) {
    fail(fmt::format("worker {} sent PeersUp out of turn", w));
    return;
  }
  slot.peers_up = true;
  if (std::all_of(workers_.begin(), workers_.end(), [](const auto& s) { return s.peers_up; })) {
    start_training();
  }
}

void Server::start_training() {
  join_timer_.cancel();
  // From here on both sides send heartbeats on an idle link, so silence means a dead peer.
  for (auto& slot : workers_) {
    slot.conn->set_read_timeout(opts_.dead_after);
    slot.conn->start_heartbeats(opts_.heartbeat_interval);
  }
  ServerObserver* observer = recorder_.get();
  if (opts_.timeline) {
    timeline_ = std::make_unique<TimelineRecorder>(
        TimelineOptions{.node_count = spec_.node_count,
                        .total_iterations = schedule_.total_iterations()},
        &clock_);
    observers_ = std::make_unique<ObserverFanout>(
        std::vector<ServerObserver*>{recorder_.get(), timeline_.get()});
    observer = observers_.get();
  }
  role_ = make_server_role(spec_, schedule_,
                           ServerContext{.parameters = model_->parameters(),
                                         .sgd = sgd_options(spec_),
                                         .uplink = uplink_codec_spec(spec_, 0),
                                         .downlink = downlink_codec_spec(spec_),
                                         .clock = &clock_,
                                         .observer = observer});
  if (resumed_) {
    role_->restore(resumed_->role_state);  // checked in load_checkpoint()
    resumed_->role_state = {};
    resumed_->parameters = {};
  }
  const auto on_shm = std::count_if(workers_.begin(), workers_.end(),
                                    [](const auto& s) { return s.conn->shared_memory(); });
  if (on_shm > 0) {
    fmt::print("init_server: {} of {} workers exchange frames through shared memory\n", on_shm,
               workers_.size());
  }
  std::vector<std::string> hosts;
  for (const auto& slot : workers_)
    hosts.push_back(slot.host);
  if (timeline_) timeline_->set_worker_hosts(hosts);
  recorder_->set_worker_hosts(std::move(hosts));
  recorder_->set_data_traffic(data_bytes_, data_seconds_);
  recorder_->start();
  if (timeline_) timeline_->start();
  phase_ = Phase::kTraining;
  arm_progress_timer();
  Outbox out;
  role_->on_start(out);
  dispatch(out);
}

void Server::on_training_message(int w, const Message& message) {
  Outbox out;
  const std::int64_t iteration_before = role_->iteration();
  const int epochs_before = recorder_->epochs_done();
  try {
    role_->on_message(w, message, out);
  } catch (const ProtocolError& e) {
    fail(fmt::format("worker {} broke the protocol: {}", w, e.what()));
    return;
  }
  dispatch(out);
  recorder_->after_dispatch(role_->iteration());
  maybe_checkpoint(iteration_before, epochs_before);
  if (role_->finished()) finish("completed", true);
}

void Server::dispatch(const Outbox& out) {
  const Message* last = nullptr;
  std::shared_ptr<const EncodedFrame> frame;
  for (const Envelope& env : out) {
    if (env.message.get() != last) {
      frame = std::make_shared<const EncodedFrame>(env.message);
      last = env.message.get();
    }
    PSGD_CHECK(env.to >= 0 && env.to < spec_.node_count, "role addressed node {}", env.to);
    auto& slot = workers_[static_cast<std::size_t>(env.to)];
    // A lost worker's messages go nowhere; a replacement still loading gets its start from
    // on_worker_rejoined().
    if (slot.conn && !slot.rejoining) slot.conn->send_frame(frame);
  }
}

void Server::arm_progress_timer() {
  progress_timer_.expires_after(std::chrono::seconds(10));
  progress_timer_.async_wait([this](std::error_code ec) {
    if (ec || phase_ != Phase::kTraining) return;
    if (auto line = recorder_->progress(role_->iteration()); !line.empty()) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    arm_progress_timer();
  });
}

void Server::fail(const std::string& why, int exit_code) {
  if (phase_ == Phase::kDone) return;
  fmt::print(stderr, "init_server: {}\n", why);
  exit_code_ = exit_code;
  finish(fmt::format("failed: {}", why), false);
}

void Server::finish(const std::string& status, bool ok) {
  if (phase_ == Phase::kDone) return;
  const bool trained = phase_ == Phase::kTraining;
  phase_ = Phase::kDone;
  if (ok) exit_code_ = 0;
  for (auto& slot : workers_) {
    if (!slot.conn) continue;
    slot.conn->send(Finish{.status = status, .ok = ok});
    slot.conn->close_after_writes();
  }
  for (const auto& [c, hs] : pending_)
    c->close();
  pending_.clear();
  for (auto& a : acceptors_) {
    std::error_code ec;
    a->close(ec);
  }
  join_timer_.cancel();
  progress_timer_.cancel();
  signals_.cancel();
  try {
    if (trained && recorder_) recorder_->load_evaluated_model();  // the averaged model, if any
    if (trained) model_->save(run_->path());
    if (timeline_) timeline_->write(run_->file("timeline.json"));
    if (recorder_) {
      nlohmann::json lost = nlohmann::json::array();
      for (std::size_t w = 0; w < workers_.size(); ++w)
        if (workers_[w].lost) lost.push_back(w);
      nlohmann::json extra{
          {"events", events_},
          {"lost_workers", lost},
          {"checkpoints_written", checkpoints_written_},
          {"workers_at_end", std::count_if(workers_.begin(), workers_.end(),
                                           [](const WorkerSlot& s) { return !s.lost; })},
          {"resumed", resumed_.has_value()}};
      // A fingerprint of the final global model: two runs that end with bit-identical
      // parameters (an interrupted-and-resumed run and an uninterrupted one) have the same.
      if (trained) extra["parameters_sha256"] = sha256_hex(model_->parameters());
      recorder_->finish(status, ok, role_ ? role_->iteration() : 0, extra);
    }
  } catch (const Error& e) {
    fmt::print(stderr, "init_server: could not complete the run directory: {}\n", e.what());
    if (exit_code_ == 0) exit_code_ = 1;
  }
  if (ok) {
    const auto& last = recorder_->history().back();
    fmt::print("init_server: {} after {} epochs ({} iterations) in {}: test loss {:.4f}{}\n",
               status, recorder_->epochs_done(), role_->iteration(), fmt_duration(last.wall_s),
               last.test_loss,
               std::isnan(last.test_accuracy)
                   ? std::string()
                   : fmt::format(", accuracy {:.2f}%", 100 * last.test_accuracy));
  }
  if (run_) {
    fmt::print("init_server: run directory {} (summary.json, metrics.csv, workers.csv)\n",
               run_->path());
  }
  std::fflush(stdout);
  // Workers get a few seconds to read Finish; then whatever is left is closed.
  shutdown_timer_.expires_after(std::chrono::seconds(5));
  shutdown_timer_.async_wait([this](std::error_code ec) {
    if (ec) return;
    for (auto& slot : workers_) {
      if (slot.conn) slot.conn->close();
    }
  });
}

nlohmann::json Server::config_json() const {
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& s : workers_) {
    workers.push_back({{"host", s.host},
                       {"pid", s.hello.pid},
                       {"psgd_revision", s.hello.version},
                       {"slowdown", s.hello.slowdown}});
  }
  return plan_->config_json(opts_.command_line, run_->path(), model_->num_parameters(), workers,
                            opts_.notes);
}

}  // namespace

int run_server(const ServerOptions& options) {
  try {
    Server server(options);
    return server.run();
  } catch (const ConfigError& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    return 2;
  } catch (const Error& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    return 1;
  }
}

}  // namespace psgd
