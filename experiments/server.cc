#include "experiments/server.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <asio.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "core/clock.h"
#include "core/error.h"
#include "core/rng.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "experiments/run_dir.h"
#include "network/tcp/connection.h"
#include "nn/data_source.h"
#include "nn/partition.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

using asio::ip::tcp;

// Limits for frames a worker may send: small until the job is known, then the largest gradient a
// codec may produce for this model (twice fp32 plus headroom).
constexpr std::uint64_t kHandshakeFrameLimit = 64 * 1024;
std::uint64_t training_frame_limit(std::size_t num_parameters) {
  return 8 * static_cast<std::uint64_t>(num_parameters) + (1 << 20);
}

enum class Phase { kJoining, kLoading, kTraining, kDone };

struct WorkerSlot {
  std::shared_ptr<net::Connection> conn;
  Hello hello;
  bool ready = false;
  std::string host;  // host name as the worker reported it
  WorkerRow epoch;   // accumulates over the current epoch
  std::uint64_t up_mark = 0, down_mark = 0;
};

class Server final : public ServerObserver {
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

  void on_worker(NodeId worker, const WorkerReport& report) override;
  void on_round(const RoundStats& stats) override;

 private:
  void prepare();
  void listen();
  void accept(tcp::acceptor& acceptor);
  void on_frame(const std::shared_ptr<net::Connection>& conn, Message&& message);
  void on_connection_error(const std::shared_ptr<net::Connection>& conn, const std::string& why);
  void on_hello(const std::shared_ptr<net::Connection>& conn, const Hello& hello);
  void send_jobs();
  void on_ready(int worker, const Ready& ready);
  void start_training();
  void on_training_message(int worker, const Message& message);
  void dispatch(const Outbox& out);
  void end_epoch();
  void print_progress();
  void arm_progress_timer();
  void fail(const std::string& why, int exit_code = 1);
  void finish(const std::string& status, bool ok);
  int worker_of(const net::Connection* conn) const;
  int joined() const;
  std::uint64_t bytes_up() const;
  std::uint64_t bytes_down() const;
  nlohmann::json config_json() const;
  void write_summary();

  ServerOptions opts_;
  JobSpec& spec_;
  asio::io_context io_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  asio::steady_timer join_timer_;
  asio::steady_timer progress_timer_;
  asio::steady_timer shutdown_timer_;
  asio::signal_set signals_;
  std::set<std::shared_ptr<net::Connection>> pending_;  // connected, no Hello yet
  std::vector<WorkerSlot> workers_;
  Phase phase_ = Phase::kJoining;

  std::shared_ptr<const nn::DataSplit> data_;
  std::unique_ptr<nn::Trainer> model_;
  nn::Placement placement_;
  std::vector<std::vector<std::int64_t>> blocks_;
  Schedule schedule_;
  std::unique_ptr<ServerRole> role_;
  std::unique_ptr<RunDirectory> run_;
  std::vector<int> ports_;

  SteadyClock clock_;
  double train_start_ = 0;
  double epoch_start_ = 0;
  double last_progress_print_ = 0;
  std::uint64_t up_at_start_ = 0, down_at_start_ = 0;
  int epoch_ = 0;
  double epoch_loss_sum_ = 0;
  std::int64_t epoch_rounds_ = 0;
  std::int64_t samples_total_ = 0;
  std::int64_t samples_at_epoch_start_ = 0;
  std::vector<MetricsRow> history_;
  std::string status_ = "not started";
  bool ok_ = false;
  int exit_code_ = 1;
};

int Server::run() {
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
  data_ = std::make_shared<const nn::DataSplit>(
      nn::load_dataset(spec_.dataset, spec_.train_samples, spec_.test_samples));
  fmt::print("init_server: {}\ninit_server: {}\n", nn::describe(data_->train),
             nn::describe(data_->test));
  model_ = std::make_unique<nn::Trainer>(nn::TrainerOptions{.model = spec_.model,
                                                            .batch_size = spec_.batch_size,
                                                            .seed = spec_.seed,
                                                            .device = spec_.device},
                                         data_, std::vector<std::int64_t>{});
  placement_ = nn::place_blocks(spec_.node_count, spec_.redundancy);
  blocks_ = nn::iid_blocks(static_cast<std::int64_t>(data_->train.size()),
                           static_cast<int>(placement_.workers_of_block.size()),
                           derive_seed(spec_.seed, 1));
  schedule_ = make_schedule(static_cast<std::int64_t>(data_->train.size()), spec_.node_count,
                            spec_.batch_size, spec_.epochs);
  fmt::print(
      "init_server: {}; {} {} with codec {}, {} workers x batch {}, {} iterations per epoch\n",
      model_->describe(), spec_.psgd, spec_.block_assignment, spec_.codec, spec_.node_count,
      spec_.batch_size, schedule_.iterations_per_epoch);
  // Created only once the data and the model are known to work, so a bad flag leaves no debris.
  const std::string dir = spec_.output.empty() ? default_run_dir(spec_) : spec_.output;
  run_ = std::make_unique<RunDirectory>(dir);
  run_->write_config(config_json());
}

void Server::listen() {
  const auto address = asio::ip::make_address(opts_.bind);
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
      "init_server: listening on {}:{}; waiting for {} workers (start each with: client "
      "--ip <this host> --port {})\n",
      opts_.bind, fmt::join(ports_, ","), spec_.node_count, ports_.front());
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
    auto conn = std::make_shared<net::Connection>(
        std::move(socket), net::ConnectionOptions{.max_body_bytes = kHandshakeFrameLimit,
                                                  .read_timeout_s = spec_.join_timeout});
    pending_.insert(conn);
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
  const int w = worker_of(conn.get());
  if (w < 0) {
    if (const auto* hello = std::get_if<Hello>(&message)) {
      on_hello(conn, *hello);
    } else {
      spdlog::warn("{} sent {} before Hello; disconnecting it", conn->peer(),
                   type_name(type_of(message)));
      pending_.erase(conn);
      conn->close();
    }
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
  if (phase_ != Phase::kTraining) {
    fail(fmt::format("worker {} sent {} before training started", w, type_name(type_of(message))));
    return;
  }
  on_training_message(w, message);
}

void Server::on_connection_error(const std::shared_ptr<net::Connection>& conn,
                                 const std::string& why) {
  if (pending_.erase(conn)) {
    spdlog::warn("dropped a connection before it said Hello: {}", why);
    return;
  }
  const int w = worker_of(conn.get());
  if (w < 0 || phase_ == Phase::kDone) return;
  if (phase_ == Phase::kJoining) {
    spdlog::warn("worker {} ({}) left before the job started: {}", w, workers_[w].host, why);
    workers_[w] = WorkerSlot{};
    return;
  }
  fail(fmt::format("lost worker {} ({}): {}", w, workers_[w].host, why));
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
  const int w = static_cast<int>(free_slot - workers_.begin());
  fmt::print("init_server: worker {} joined from {} ({}, pid {}) [{}/{}]\n", w, hello.host,
             conn->peer(), hello.pid, joined(), spec_.node_count);
  std::fflush(stdout);
  if (joined() == spec_.node_count) send_jobs();
}

void Server::send_jobs() {
  phase_ = Phase::kLoading;
  std::map<std::string, int> per_host;
  for (const auto& w : workers_)
    per_host[w.host]++;
  const std::string spec_json = nlohmann::json(spec_).dump();
  const std::size_t params = model_->num_parameters();
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    const int cores = std::max(1, slot.hello.cores);
    Job job{.worker_id = static_cast<std::int32_t>(w),
            .spec_json = spec_json,
            .samples = nn::worker_samples(placement_, blocks_, static_cast<int>(w)),
            .threads = spec_.threads > 0 ? spec_.threads : std::max(1, cores / per_host[slot.host]),
            .num_parameters = params};
    slot.conn->set_max_body_bytes(training_frame_limit(params));
    slot.conn->set_read_timeout(spec_.join_timeout);
    slot.conn->send(job);
  }
  fmt::print("init_server: all {} workers joined; they are loading their data\n", spec_.node_count);
  std::fflush(stdout);
  run_->write_config(config_json());
}

void Server::on_ready(int w, const Ready& ready) {
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
  fmt::print("init_server: worker {} ready: {} samples, {} thread(s), BLAS: {}\n", w,
             fmt_count(static_cast<double>(ready.samples)), ready.threads, ready.detail);
  std::fflush(stdout);
  if (std::all_of(workers_.begin(), workers_.end(), [](const auto& s) { return s.ready; })) {
    start_training();
  }
}

void Server::start_training() {
  join_timer_.cancel();
  for (auto& slot : workers_)
    slot.conn->set_read_timeout(spec_.io_timeout);
  role_ = make_server_role(spec_, schedule_,
                           ServerContext{.parameters = model_->parameters(),
                                         .sgd = sgd_options(spec_),
                                         .uplink = uplink_codec_spec(spec_, 0),
                                         .downlink = downlink_codec_spec(spec_),
                                         .clock = &clock_,
                                         .observer = this});
  const EvalStats initial = model_->evaluate();
  MetricsRow row{.epoch = 0, .test_loss = initial.loss, .test_accuracy = initial.accuracy};
  run_->append_metrics(row);
  history_.push_back(row);
  fmt::print("init_server: training for {} epochs; initial test accuracy {:.2f}%\n", spec_.epochs,
             100 * initial.accuracy);
  std::fflush(stdout);

  phase_ = Phase::kTraining;
  status_ = "training";
  up_at_start_ = bytes_up();
  down_at_start_ = bytes_down();
  for (auto& slot : workers_) {
    slot.up_mark = slot.conn->bytes_received();
    slot.down_mark = slot.conn->bytes_sent();
  }
  train_start_ = epoch_start_ = last_progress_print_ = clock_.now();
  arm_progress_timer();
  Outbox out;
  role_->on_start(out);
  dispatch(out);
}

void Server::on_training_message(int w, const Message& message) {
  Outbox out;
  try {
    role_->on_message(w, message, out);
  } catch (const ProtocolError& e) {
    fail(fmt::format("worker {} broke the protocol: {}", w, e.what()));
    return;
  }
  dispatch(out);
  while (phase_ == Phase::kTraining &&
         role_->iteration() >= (epoch_ + 1) * schedule_.iterations_per_epoch) {
    end_epoch();
  }
  if (phase_ == Phase::kTraining && role_->finished()) finish("completed", true);
}

void Server::dispatch(const Outbox& out) {
  const Message* last = nullptr;
  std::shared_ptr<const std::vector<std::uint8_t>> frame;
  for (const Envelope& env : out) {
    if (env.message.get() != last) {
      frame = std::make_shared<const std::vector<std::uint8_t>>(encode_frame(*env.message));
      last = env.message.get();
    }
    PSGD_CHECK(env.to >= 0 && env.to < spec_.node_count, "role addressed node {}", env.to);
    workers_[static_cast<std::size_t>(env.to)].conn->send_frame(frame);
  }
}

void Server::on_worker(NodeId w, const WorkerReport& report) {
  WorkerRow& row = workers_[static_cast<std::size_t>(w)].epoch;
  row.iterations += 1;
  row.samples += report.samples;
  row.times += report.times;
  row.held_s += report.held_s;
  row.add_compression_error(report.compression_error);
}

void Server::on_round(const RoundStats& stats) {
  epoch_loss_sum_ += stats.train_loss;
  epoch_rounds_ += 1;
  samples_total_ += stats.samples;
}

void Server::end_epoch() {
  ++epoch_;
  const double now = clock_.now();
  const double epoch_s = now - epoch_start_;
  const EvalStats eval = model_->evaluate();
  MetricsRow row{.epoch = epoch_,
                 .iteration = role_->iteration(),
                 .wall_s = clock_.now() - train_start_,
                 .train_loss = epoch_rounds_ ? epoch_loss_sum_ / epoch_rounds_ : 0.0,
                 .test_loss = eval.loss,
                 .test_accuracy = eval.accuracy,
                 .bytes_up = bytes_up() - up_at_start_,
                 .bytes_down = bytes_down() - down_at_start_,
                 .samples = samples_total_};
  run_->append_metrics(row);
  history_.push_back(row);
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    WorkerRow& r = slot.epoch;
    r.epoch = epoch_;
    r.worker = static_cast<int>(w);
    r.host = slot.host;
    r.transfer_s = std::max(0.0, r.times.wait_s - r.held_s);
    r.bytes_up = slot.conn->bytes_received() - slot.up_mark;
    r.bytes_down = slot.conn->bytes_sent() - slot.down_mark;
    slot.up_mark = slot.conn->bytes_received();
    slot.down_mark = slot.conn->bytes_sent();
    run_->append_worker(r);
    r = WorkerRow{};
  }
  const double rate = (samples_total_ - samples_at_epoch_start_) / std::max(epoch_s, 1e-9);
  const double elapsed = row.wall_s;
  const double eta = elapsed / epoch_ * (spec_.epochs - epoch_);
  fmt::print(
      "epoch {:>3}/{}  iter {:>6}  train_loss {:.4f}  test_loss {:.4f}  test_acc {:6.2f}%  "
      "{:>8} samples/s  elapsed {}  ETA {}\n",
      epoch_, spec_.epochs, row.iteration, *row.train_loss, row.test_loss, 100 * row.test_accuracy,
      fmt_count(rate), fmt_duration(elapsed), fmt_duration(eta));
  std::fflush(stdout);
  epoch_loss_sum_ = 0;
  epoch_rounds_ = 0;
  samples_at_epoch_start_ = samples_total_;
  epoch_start_ = last_progress_print_ = clock_.now();
}

void Server::arm_progress_timer() {
  progress_timer_.expires_after(std::chrono::seconds(10));
  progress_timer_.async_wait([this](std::error_code ec) {
    if (ec || phase_ != Phase::kTraining) return;
    print_progress();
    arm_progress_timer();
  });
}

void Server::print_progress() {
  const double now = clock_.now();
  if (now - last_progress_print_ < 9.5) return;
  last_progress_print_ = now;
  const std::int64_t in_epoch = role_->iteration() - epoch_ * schedule_.iterations_per_epoch;
  const double rate =
      (samples_total_ - samples_at_epoch_start_) / std::max(now - epoch_start_, 1e-9);
  fmt::print("  epoch {}/{}: {}/{} iterations, {} samples/s\n", epoch_ + 1, spec_.epochs, in_epoch,
             schedule_.iterations_per_epoch, fmt_count(rate));
  std::fflush(stdout);
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
  status_ = status;
  ok_ = ok;
  if (ok) exit_code_ = 0;
  for (auto& slot : workers_) {
    if (!slot.conn) continue;
    slot.conn->send(Finish{.status = status, .ok = ok});
    slot.conn->close_after_writes();
  }
  for (const auto& c : pending_)
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
    if (trained) model_->save(run_->path());
    write_summary();
  } catch (const Error& e) {
    fmt::print(stderr, "init_server: could not complete the run directory: {}\n", e.what());
    if (exit_code_ == 0) exit_code_ = 1;
  }
  if (ok) {
    const auto& last = history_.back();
    fmt::print("init_server: {} after {} epochs ({} iterations) in {}: test accuracy {:.2f}%\n",
               status, epoch_, role_->iteration(), fmt_duration(last.wall_s),
               100 * last.test_accuracy);
  }
  fmt::print("init_server: run directory {} (summary.json, metrics.csv, workers.csv)\n",
             run_->path());
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

std::uint64_t Server::bytes_up() const {
  std::uint64_t n = 0;
  for (const auto& s : workers_) {
    if (s.conn) n += s.conn->bytes_received();
  }
  return n;
}

std::uint64_t Server::bytes_down() const {
  std::uint64_t n = 0;
  for (const auto& s : workers_) {
    if (s.conn) n += s.conn->bytes_sent();
  }
  return n;
}

nlohmann::json Server::config_json() const {
  nlohmann::json j;
  j["job"] = spec_;
  j["job"]["output"] = run_->path();
  j["provenance"] = provenance(opts_.command_line);
  j["model"] = {{"name", spec_.model}, {"parameters", model_->num_parameters()}};
  j["data"] = {{"dataset", spec_.dataset},
               {"train_samples", data_->train.size()},
               {"test_samples", data_->test.size()},
               {"blocks", blocks_.size()}};
  j["schedule"] = {{"iterations_per_epoch", schedule_.iterations_per_epoch},
                   {"total_iterations", schedule_.total_iterations()},
                   {"global_batch", spec_.node_count * spec_.batch_size}};
  nlohmann::json workers = nlohmann::json::array();
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    const auto& s = workers_[w];
    workers.push_back({{"worker", w},
                       {"host", s.host},
                       {"pid", s.hello.pid},
                       {"psgd_revision", s.hello.version},
                       {"blocks", placement_.blocks_of_worker[w]}});
  }
  j["workers"] = workers;
  j["seed"] = spec_.seed;
  return j;
}

void Server::write_summary() {
  nlohmann::json s;
  double best = 0;
  for (const auto& r : history_)
    best = std::max(best, r.test_accuracy);
  const MetricsRow* last = history_.empty() ? nullptr : &history_.back();
  const double wall = phase_ == Phase::kDone && train_start_ > 0 ? clock_.now() - train_start_ : 0;
  s["status"] = status_;
  s["ok"] = ok_;
  s["final_test_accuracy"] = last ? nlohmann::json(last->test_accuracy) : nlohmann::json(nullptr);
  s["final_test_loss"] = last ? nlohmann::json(last->test_loss) : nlohmann::json(nullptr);
  s["final_train_loss"] =
      last && last->train_loss ? nlohmann::json(*last->train_loss) : nlohmann::json(nullptr);
  s["best_test_accuracy"] = history_.empty() ? nlohmann::json(nullptr) : nlohmann::json(best);
  s["epochs"] = epoch_;
  s["iterations"] = role_ ? role_->iteration() : 0;
  s["wall_seconds"] = last ? last->wall_s : wall;
  s["virtual_seconds"] = nullptr;
  s["samples"] = samples_total_;
  s["samples_per_second"] = last && last->wall_s > 0 ? samples_total_ / last->wall_s : 0.0;
  s["bytes_up"] = last ? last->bytes_up : 0;
  s["bytes_down"] = last ? last->bytes_down : 0;
  s["nodes"] = spec_.node_count;
  s["psgd"] = spec_.psgd;
  s["codec"] = spec_.codec;
  s["redundancy"] = spec_.redundancy;
  s["block_assignment"] = spec_.block_assignment;
  s["model"] = spec_.model;
  s["dataset"] = spec_.dataset;
  s["batch_size"] = spec_.batch_size;
  s["learn_rate"] = spec_.learn_rate;
  s["seed"] = spec_.seed;
  s["parameters"] = model_ ? model_->num_parameters() : 0;
  s["run_dir"] = run_->path();
  run_->write_summary(s);
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
