// client's TCP driver (experiments/client/client.h): dials the server, runs the handshake
// (network/handshake.h), gets its Job and data (worker_data.h), builds its worker
// (experiments/worker_setup.h), links up with its peers where the strategy needs them, and
// drives the worker role until Finish. Everything runs on the io_context's thread.
#include <fmt/format.h>
#include <unistd.h>
#include <asio.hpp>

#include <csignal>
#include <memory>
#include <optional>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "experiments/client/client.h"
#include "experiments/client/driver.h"
#include "experiments/client/worker_data.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "experiments/worker_setup.h"
#include "network/handshake.h"
#include "network/tcp/connection.h"
#include "network/tcp/peer_mesh.h"
#include "network/transport.h"
#include "nn/gloo_allreduce.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "nn/version.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

// Before the job says how big the model is, frames up to this size are accepted (a Job carries
// the worker's sample indices: 8 bytes per sample).
constexpr std::uint64_t kJobFrameLimit = 256ull << 20;
constexpr double kJobWaitSeconds = 3600;  // the server's --join_timeout bounds this in practice
constexpr double kAuthSeconds = 30;       // for the server's AuthChallenge
// Frames the server may send before it has proved the passphrase: its challenge, or why it
// refuses this worker.
constexpr std::uint64_t kAuthReplyLimit = 4096;
// Times a client that lost its server mid-job dials it again before giving up.
constexpr int kMaxReconnects = 3;

}  // namespace

void Client::say(const std::string& line) {
  if (worker_ >= 0) {
    fmt::print("client[{}]: {}\n", worker_, line);
  } else {
    fmt::print("client: {}\n", line);
  }
  std::fflush(stdout);
}

int Client::run() {
  auto key = net::load_key(opts_.passphrase_file);
  say(fmt::format("connecting to {}:{} (retrying for up to {:.0f} s while the server starts)",
                  opts_.ip, opts_.port, opts_.connect_timeout));
  asio::ip::tcp::socket socket = net::dial(io_, opts_.ip, opts_.port, opts_.connect_timeout);
  conn_ = std::make_shared<net::Connection>(
      std::move(socket),
      net::ConnectionOptions{.max_body_bytes = kAuthReplyLimit, .read_timeout_s = kAuthSeconds});
  const std::string identity = fmt::format("{}:{}", host_name(), getpid());
  handshake_ = std::make_unique<net::ClientHandshake>(
      key, identity,
      Hello{.protocol = kProtocolVersion,
            .host = host_name(),
            .pid = static_cast<std::int32_t>(getpid()),
            .cores = static_cast<std::int32_t>(std::thread::hardware_concurrency()),
            .threads = opts_.threads,
            .version = psgd_revision(),
            .slowdown = opts_.slowdown});
  // Until the handshake is done only its next message (or a refusal) is read.
  conn_->set_type_filter([hs = handshake_.get()](MessageType t) { return hs->expects(t); });
  conn_->start([this](Message&& m, std::size_t bytes) { on_frame(std::move(m), kServer, bytes); },
               [this](const std::string& why) { on_error(why); });
  signals_.async_wait([this](std::error_code ec, int sig) {
    if (ec) return;
    exit_code_ = 128 + sig;
    give_up(fmt::format("interrupted by signal {}", sig), true);
  });
  conn_->send(handshake_->start());
  io_.run();
  return exit_code_;
}

void Client::on_handshake(const Message& message) {
  net::HandshakeStep step = handshake_->on_message(message);
  for (Message& m : step.send)
    conn_->send(std::move(m));
  if (!step.refusal.empty()) {
    give_up(step.refusal, false);
    return;
  }
  if (!step.done) return;
  conn_->set_type_filter(
      [](MessageType t) { return t != MessageType::kAuthChallenge && t != MessageType::kAuthOk; });
  conn_->set_max_body_bytes(kJobFrameLimit);
  conn_->set_read_timeout(kJobWaitSeconds);
  conn_->accept_shared_memory(opts_.shared_memory == "on");
  say(fmt::format(
      "connected{}; waiting for the job (training starts when every worker has "
      "joined)",
      handshake_->authenticated() ? " and authenticated (the server proved the passphrase)" : ""));
}

void Client::on_frame(Message&& message, NodeId from, std::size_t bytes) {
  if (done_) return;
  if (!handshake_->done()) {
    on_handshake(message);
    return;
  }
  if (const auto* err = std::get_if<ErrorMessage>(&message)) {
    give_up(fmt::format("the server refused this worker: {}", err->text), false);
    return;
  }
  if (const auto* job = std::get_if<Job>(&message)) {
    on_job(*job);
    return;
  }
  if (const auto* chunk = std::get_if<DataChunk>(&message)) {
    try {
      on_data_chunk(*chunk);
    } catch (const Error& e) {
      give_up(e.what(), true);
    }
    return;
  }
  if (const auto* finish = std::get_if<Finish>(&message)) {
    on_finish(*finish);
    return;
  }
  if (const auto* table = std::get_if<PeerTable>(&message)) {
    on_peer_table(*table);
    return;
  }
  if (!role_) {
    give_up(fmt::format("the server sent {} before the job", type_name(type_of(message))), true);
    return;
  }
  if (!training_ && from == kServer) {
    // The server sends heartbeats from now on: silence means it is gone.
    training_ = true;
    conn_->set_read_timeout(opts_.dead_after);
  }
  links_->received(from, bytes);
  deliver(message);
}

void Client::deliver(const Message& message) {
  if (done_) return;
  try {
    Outbox out;
    const WorkerAction action = role_->on_message(message, out);
    links_->send(out);
    if (action.compute) compute_next();
  } catch (const Error& e) {
    give_up(e.what(), true);
  }
}

// One compute step per turn of the event loop: between steps the links write what was queued,
// read what arrived and send their heartbeats. (Steps run back to back in one call would starve
// them: a strategy that computes many steps without waiting for a message, such as allreduce on
// Gloo, sent no heartbeat and was declared dead after --dead_after.)
void Client::compute_next() {
  asio::post(io_, [this] {
    if (done_) return;
    try {
      Outbox out;
      const WorkerAction action = role_->compute_step(out);
      links_->send(out);
      if (action.compute) compute_next();
    } catch (const Error& e) {
      give_up(e.what(), true);
    }
  });
}

void Client::on_job(const Job& job) {
  if (role_ || worker_ >= 0) {
    give_up("the server sent a second job", true);
    return;
  }
  try {
    from_json(nlohmann::json::parse(job.spec_json), spec_);
    spec_.validate();
  } catch (const std::exception& e) {
    give_up(fmt::format("cannot read the job the server sent: {}", e.what()), true);
    return;
  }
  worker_ = job.worker_id;
  threads_ = opts_.threads > 0 ? opts_.threads : std::max(1, job.threads);
  job_ = job;
  try {
    nn::set_compute_threads(threads_);
    data_ = std::make_unique<WorkerData>(spec_, job_,
                                         opts_.dataset.empty() ? spec_.dataset : opts_.dataset);
    WorkerData::Start start = data_->begin();
    if (!start.note.empty()) say(start.note);
    if (start.offer) {
      ship_start_ = clock_.now();
      conn_->send(*start.offer);
      return;
    }
    start_with(std::move(*start.samples));
  } catch (const Error& e) {
    give_up(e.what(), true);
  }
}

void Client::on_data_chunk(const DataChunk& chunk) {
  if (!data_ || role_) {
    throw ProtocolError("the server sent DataChunk without --ship_data or after the data");
  }
  std::optional<nn::Dataset> samples = data_->on_chunk(chunk);
  if (!samples) return;
  say(fmt::format("{} in {}", data_->received_note(), fmt_duration(clock_.now() - ship_start_)));
  start_with(std::move(*samples));
}

void Client::start_with(nn::Dataset samples) {
  try {
    const WorkerSetup setup{
        .worker = worker_,
        .block_ids = job_.block_ids,
        .block_sizes = job_.block_sizes,
        .normalizer = {.kind = spec_.normalize, .shift = job_.norm_shift, .scale = job_.norm_scale},
        .train_size = job_.train_size,
        .start_batch = job_.start_batch};
    setup.normalizer.apply(samples);
    const auto count = static_cast<std::int64_t>(samples.size());
    auto split = std::make_shared<nn::DataSplit>();
    split->train = std::move(samples);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i)
      rows[static_cast<std::size_t>(i)] = i;
    // The schedule is the job's, over the whole training set, not this worker's share of it.
    schedule_ = make_schedule(spec_, job_.train_size);
    if (spec_.psgd == "allreduce" && spec_.allreduce_backend == "gloo") {
      gloo_ = std::make_unique<GlooCollective>();
      if (worker_ == 0) {
        gloo_->store = std::make_unique<nn::GlooStoreHost>(spec_.node_count, 0, spec_.io_timeout);
        peer_port_ = gloo_->store->port();
      }
    }
    parts_ = std::make_unique<WorkerParts>(
        spec_, schedule_, setup, std::move(split), std::move(rows),
        WorkerEnv{
            .clock = &clock_,
            .pause =
                [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); },
            .work = &cpu_clock_,
            .slowdown = opts_.slowdown,
            .collective = gloo_.get()});
    role_ = &parts_->role();
    if (parts_->trainer().num_parameters() != job_.num_parameters) {
      throw ConfigError(fmt::format(
          "this worker's {} model has {} parameters but the server's has {}; run the same psgd "
          "version everywhere",
          spec_.model, parts_->trainer().num_parameters(), job_.num_parameters));
    }
    links_ = std::make_unique<Links>(*this, spec_.node_count);
    if (!gloo_ && strategy_of(spec_).topology == Topology::kPeerToPeer) {
      mesh_ = std::make_unique<net::PeerMesh>(
          io_, worker_, spec_.node_count,
          net::ConnectionOptions{.max_body_bytes = training_frame_limit(job_.num_parameters),
                                 .read_timeout_s = spec_.io_timeout});
      peer_port_ = mesh_->listen("0.0.0.0");
    }
  } catch (const Error& e) {
    give_up(e.what(), true);
    return;
  }
  conn_->set_max_body_bytes(training_frame_limit(job_.num_parameters));
  conn_->set_read_timeout(std::max(spec_.io_timeout, spec_.join_timeout));
  if (job_.start_batch > 0) {
    say(fmt::format("continuing worker {}'s batch order after its first {} batches", worker_,
                    job_.start_batch));
  }
  say(fmt::format("worker {} of {}: {} samples of {}, {}, {} thread(s), {} {}{}", worker_,
                  spec_.node_count, fmt_count(static_cast<double>(job_.samples.size())),
                  spec_.dataset, parts_->trainer().describe(), threads_, spec_.psgd, spec_.codec,
                  parts_->straggling()
                      ? fmt::format(", slowdown {} delay {}", opts_.slowdown, spec_.delay)
                      : ""));
  conn_->send(Ready{.worker_id = worker_,
                    .num_parameters = job_.num_parameters,
                    .samples = static_cast<std::int64_t>(job_.samples.size()),
                    .threads = threads_,
                    .detail = nn::blas_description(),
                    .peer_port = peer_port_});
  conn_->start_heartbeats(opts_.heartbeat_interval);
  job_.samples = {};
  data_.reset();
  start_ = clock_.now();
}

void Client::on_finish(const Finish& finish) {
  done_ = true;
  exit_code_ = finish.ok ? 0 : 1;
  const std::int64_t iterations = role_ ? role_->iterations_done() : 0;
  if (finish.ok) {
    say(fmt::format("done: {} ({} iterations in {})", finish.status, iterations,
                    fmt_duration(clock_.now() - start_)));
  } else {
    fmt::print(stderr, "client[{}]: the job ended without completing: {}\n", worker_,
               finish.status);
  }
  signals_.cancel();
  if (mesh_) mesh_->close();
  conn_->close();
}

void Client::on_error(const std::string& why) {
  if (done_) return;
  lost_server_ = worker_ >= 0;  // it had joined a job
  give_up(fmt::format("lost the connection to the server: {}", why), false);
}

void Client::give_up(const std::string& why, bool tell_server) {
  if (done_) return;
  done_ = true;
  if (exit_code_ == 0) exit_code_ = 1;
  if (worker_ >= 0) {
    fmt::print(stderr, "client[{}]: {}\n", worker_, why);
  } else {
    fmt::print(stderr, "client: {}\n", why);
  }
  signals_.cancel();
  if (mesh_) mesh_->close();
  if (tell_server && conn_ && conn_->is_open()) {
    conn_->send(ErrorMessage{why});
    conn_->close_after_writes();
  } else if (conn_) {
    conn_->close_after_writes();  // at once, unless a last frame (a refusal) is queued
  }
}

int run_client(const ClientOptions& options) {
  return exit_code_of("client", [&] {
    for (int attempt = 0;; ++attempt) {
      Client client(options);
      int code = 1;
      try {
        code = client.run();
      } catch (const IoError& e) {
        if (attempt == 0) throw;
        fmt::print(stderr, "client: the server did not come back: {}\n", e.what());
        return 1;
      }
      if (!client.lost_server() || code >= 128) return code;
      if (attempt == kMaxReconnects) {
        fmt::print(stderr, "client: lost the server {} times; giving up\n", attempt + 1);
        return code;
      }
      // The server died or the link broke: dial again (with backoff, for --connect_timeout) in
      // case it comes back, and join as a new worker.
      fmt::print(stderr, "client: reconnecting to {}:{} (retrying for up to {:.0f} s)\n",
                 options.ip, options.port, options.connect_timeout);
    }
  });
}

}  // namespace psgd
