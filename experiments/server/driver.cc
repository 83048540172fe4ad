// init_server's TCP driver, part 1: accepting and authenticating connections, joining and loading
// (experiments/server/driver.h). setup.cc sets the server up; training.cc drives the training and
// ends the run. About 475 lines: joining and loading are one state machine per connection,
// read best in one file.
#include "experiments/server/driver.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <future>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "experiments/server/server.h"
#include "network/liveness.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"
#include "nn/threads.h"
#include "psgd/factory.h"

namespace psgd {
namespace {

using asio::ip::tcp;

// Frames a worker may send once authenticated, until the job is known (then
// training_frame_limit, network/frame.h).
constexpr std::uint64_t kHelloFrameLimit = 64 * 1024;
// A peer must finish authenticating within this time, and at most this many may be trying at
// once (more are closed at once), so idle or hostile connections cannot pile up.
constexpr double kAuthSeconds = 10;
constexpr std::size_t kMaxPending = 256;

std::string fmt_bytes(double bytes) {
  return bytes >= 1 << 20 ? fmt::format("{:.1f} MiB", bytes / (1 << 20))
                          : fmt::format("{:.1f} KiB", bytes / 1024);
}

std::string address_of(const net::Connection& conn) {
  const std::string peer = conn.peer();
  return peer.substr(0, peer.rfind(':'));
}

}  // namespace

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
    auto conn = std::make_shared<Conn>(
        std::move(socket),
        net::ConnectionOptions{.max_body_bytes = net::kAuthFrameLimit,
                               .read_timeout_s = std::min(kAuthSeconds, spec_.join_timeout)});
    auto hs = std::make_shared<net::ServerHandshake>(key_, id_);
    pending_.emplace(conn, hs);
    // Until the handshake is done only its next frame is read; anything else closes the link
    // before its body is read.
    conn->set_type_filter([hs](MessageType t) { return hs->expects(t); });
    std::weak_ptr<Conn> weak = conn;
    conn->start(
        [this, weak](Message&& m, std::size_t bytes) {
          if (auto c = weak.lock()) on_frame(c, std::move(m), bytes);
        },
        [this, weak](const std::string& why) {
          if (auto c = weak.lock()) on_connection_error(c, why);
        });
    accept(acceptor);
  });
}

void Server::refuse(const ConnPtr& conn, const std::string& why) {
  spdlog::warn("refused {}: {}", conn->peer(), why);
  conn->send(ErrorMessage{why});
  conn->close_after_writes();
}

void Server::on_frame(const ConnPtr& conn, Message&& message, std::size_t bytes) {
  if (auto it = pending_.find(conn); it != pending_.end()) {
    if (phase_ == Phase::kDone) return;
    auto hs = it->second;  // on_handshake may erase the entry
    on_handshake(conn, *hs, message);
    return;
  }
  const int w = workers_.find(conn.get());
  if (w < 0) return;
  // A piece of the worker's log and trace, in any phase until the run directory is written: kept
  // in memory (bounded), never waited for.
  if (const auto* piece = std::get_if<WorkerLog>(&message)) {
    if (!results_closed_) results_.add(w, *piece);
    return;
  }
  if (phase_ == Phase::kDone) return;
  if (const auto* leave = std::get_if<Leave>(&message)) {
    on_worker_left(conn, w, *leave);
    return;
  }
  const bool rejoining = workers_[w].rejoining;
  if (rejoining && !std::holds_alternative<Ready>(message) &&
      !std::holds_alternative<DataOffer>(message) && !std::holds_alternative<LocalData>(message)) {
    drop_replacement(w, fmt::format("sent {} while loading", type_name(type_of(message))));
    return;
  }
  if (const auto* err = std::get_if<ErrorMessage>(&message)) {
    fail(fmt::format("worker {} ({}) gave up: {}", w, workers_[w].where(), err->text));
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
  if (const auto* report = std::get_if<LocalData>(&message)) {
    on_local_data(w, *report);
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
  if (auto* state = std::get_if<WorkerState>(&message)) {
    on_worker_state(w, std::move(*state));
    return;
  }
  on_training_message(w, std::move(message), bytes);
}

void Server::on_connection_error(const ConnPtr& conn, const std::string& why) {
  if (pending_.erase(conn)) {
    spdlog::warn("dropped a connection before it authenticated and said Hello: {}", why);
    return;
  }
  const int w = workers_.find(conn.get());
  if (w < 0 || phase_ == Phase::kDone) return;
  if (phase_ == Phase::kJoining) {
    spdlog::warn("worker {} ({}) left before the job started: {}", w, workers_[w].host(), why);
    workers_.leave(w);
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
  const std::string host = workers_[w].host();
  const char* stage = stage_before_training();  // before the loss changes who is ready
  record_lost(w, why, false);
  workers_.lose(w);
  fail(fmt::format("lost worker {} ({}) while the workers were {}: {}", w, host, stage, why));
}

void Server::on_handshake(const ConnPtr& conn, net::ServerHandshake& hs, const Message& message) {
  net::HandshakeStep step = hs.on_message(message);
  if (!step.refusal.empty()) {
    pending_.erase(conn);
    refuse(conn, hs.identity().empty() ? step.refusal
                                       : fmt::format("{} ({})", step.refusal, hs.identity()));
    return;
  }
  for (Message& m : step.send)
    conn->send(std::move(m));
  if (hs.expects(MessageType::kHello)) conn->set_max_body_bytes(kHelloFrameLimit);
  if (!step.done) return;
  pending_.erase(conn);
  // Authenticated: from now on anything but the handshake's frames.
  conn->set_type_filter([](MessageType t) {
    return t != MessageType::kAuthHello && t != MessageType::kAuthProof && t != MessageType::kHello;
  });
  on_hello(conn, *step.hello);
}

void Server::on_hello(const ConnPtr& conn, const Hello& hello) {
  if (phase_ == Phase::kTraining) {
    take_over(conn, hello);
    return;
  }
  const int w = phase_ == Phase::kJoining ? workers_.join(conn, hello, address_of(*conn)) : -1;
  if (w < 0) {
    refuse(conn, fmt::format("this job already has its {} workers", spec_.node_count));
    return;
  }
  fmt::print("init_server: worker {} joined from {} ({}, pid {}{}) [{}/{}]\n", w, hello.host,
             conn->peer(), hello.pid,
             hello.slowdown != 1.0 ? fmt::format(", slowdown {}", hello.slowdown) : "",
             workers_.joined(), spec_.node_count);
  // Heartbeats both ways from now on: a worker may wait for the others as long as --join_timeout
  // allows, and one that dies or hangs meanwhile is noticed within --dead_after.
  watch(w, *conn, hello, /*say=*/true);
  std::fflush(stdout);
  if (workers_.joined() == spec_.node_count) send_jobs();
}

void Server::watch(int w, Conn& conn, const Hello& hello, bool say) {
  const double beat = net::heartbeat_interval_for(opts_.heartbeat_interval, hello.dead_after);
  conn.set_read_timeout(opts_.dead_after);
  conn.start_heartbeats(beat);
  if (say && beat < opts_.heartbeat_interval) {
    fmt::print(
        "init_server: worker {} gives up a server silent for {:g} s (its --dead_after): "
        "heartbeats to it every {:g} s instead of --heartbeat_interval {:g}\n",
        w, hello.dead_after, beat, opts_.heartbeat_interval);
  }
}

// A worker on this machine gets a shared-memory channel for its large frames (it maps it only if
// it really is here, else the link stays on TCP).
void Server::offer_shared_memory(Conn& conn) {
  if (opts_.shared_memory != "on" || !conn.peer_on_this_host()) return;
  // Two slots per direction: every strategy has at most one large frame in flight each way per
  // worker, and the second slot lets the next one go out while the receiver still holds the last.
  conn.offer_shared_memory(
      net::fp32_frame_slot_bytes(model_->num_parameters() + model_->num_buffers()),
      /*slots=*/2);
}

// Torch threads for a worker (--threads, else its host's cores divided among the psgd processes
// there, this server's included: a worker whose threads fill every core would fight the server
// for them each round; with two threads and the server on two cores, a single worker runs at
// less than half its speed).
int Server::worker_threads(int w) const {
  if (spec_.threads > 0) return spec_.threads;
  const auto& slot = workers_[w];
  const int on_host = (slot.host() == host_name() ? 1 : 0) + workers_.on_host(slot.host());
  return std::max(1, std::max(1, slot.hello.cores) / std::max(1, on_host));
}

std::chrono::microseconds Server::poll_window() const {
  const std::chrono::microseconds none(0);
  // The default (0) returns before the evaluation's future is asked, once per handler.
  if (phase_ == Phase::kJoining || spec_.busy_poll_us <= 0) return none;
  if (evaluating_.valid() &&
      evaluating_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return none;
  }
  return std::chrono::microseconds(spec_.busy_poll_us);
}

Job Server::make_job(int w, int threads) const {
  const WorkerSetup setup = plan_->worker(w);
  Job job{.worker_id = w,
          .spec_json = nlohmann::json(spec_).dump(),
          .samples = setup.samples,
          .threads = threads,
          .num_parameters = model_->num_parameters(),
          .data_hash = plan_->data_hash(),
          .norm_shift = setup.normalizer.shift,
          .norm_scale = setup.normalizer.scale,
          .train_size = setup.train_size,
          .block_ids = setup.block_ids,
          .block_sizes = setup.block_sizes,
          .model_file = setup.script ? *setup.script : std::string(),
          .model_sha256 = plan_->script_sha256()};
  if (spec_.local_data) {
    job.test_salt = local_salt_;
    job.test_hashes = local_test_hashes_;
  }
  // A resumed run, or a slot taken over during training: continue that worker's batch order
  // (a resumed run also from the worker's own state; a replacement starts afresh).
  if (role_) {
    job.start_batch = std::max<std::int64_t>(0, role_->worker_batches(w));
  } else if (resumed_) {
    job.start_batch =
        std::max<std::int64_t>(0, resumed_->worker_batches[static_cast<std::size_t>(w)]);
    job.worker_state = resumed_->worker_states.at(static_cast<std::size_t>(w));
  }
  return job;
}

void Server::send_jobs() {
  phase_ = Phase::kLoading;
  const std::size_t params = model_->num_parameters() + model_->num_buffers();
  for (int w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    if (!spec_.local_data) slot.samples = plan_->placement().samples_of(w);
    const Job job = make_job(w, worker_threads(w));
    slot.link->set_max_body_bytes(training_frame_limit(params));
    offer_shared_memory(*slot.link);
    slot.link->send(job);
  }
  fmt::print("init_server: all {} workers joined; they are loading their data\n", spec_.node_count);
  std::fflush(stdout);
  // --local_data: config.json is written once the workers' files have fixed the schedule.
  if (!resumed_ && !spec_.local_data) {
    try {
      run_->write_config(config_json());
    } catch (const IoError& e) {
      fail(e.what());
    }
  }
}

void Server::on_data_offer(int w, const DataOffer& offer) {
  auto& slot = workers_[w];
  if ((phase_ != Phase::kLoading && !slot.rejoining) || !shipper_ || slot.offered) {
    if (slot.rejoining) {
      drop_replacement(w, "sent DataOffer out of turn");
      return;
    }
    fail(fmt::format("worker {} sent DataOffer out of turn", w));
    return;
  }
  slot.offered = true;
  if (ship_start_ < 0) ship_start_ = clock_.now();
  const double t0 = clock_.now();
  const DataShipper::Shipment s = shipper_->answer(offer, slot.samples);
  for (const auto& frame : s.frames)
    slot.link->send_frame(frame);
  if (s.skipped && spec_.ship_data == "auto") {
    fmt::print("init_server: worker {} holds the rows assigned to it; not shipping\n", w);
  } else if (s.skipped) {
    fmt::print("init_server: worker {} holds the same training set (sha256 {}...); not shipping\n",
               w, shipper_->hash().substr(0, 12));
  } else {
    if (spec_.ship_data == "auto") {
      fmt::print(
          "init_server: worker {} ({}) cannot train on its own {}: {}; shipping it its rows\n", w,
          slot.host(), offer.dataset, s.why);
    }
    shipped_.push_back({{"worker", w},
                        {"host", slot.host()},
                        {"dataset", offer.dataset},
                        {"why", s.why},
                        {"samples", slot.samples.size()},
                        {"wire_bytes", s.wire_bytes}});
    if (recorder_) recorder_->set_shipped_workers(shipped_);
    fmt::print(
        "init_server: shipping worker {} its {} samples: {} in {} chunk(s), {} compressed "
        "(packed in {})\n",
        w, slot.samples.size(), fmt_bytes(static_cast<double>(s.packed_bytes)), s.frames.size(),
        fmt_bytes(static_cast<double>(s.wire_bytes)), fmt_duration(clock_.now() - t0));
  }
  std::fflush(stdout);
}

void Server::on_ready(int w, const Ready& ready) {
  auto& slot = workers_[w];
  if (ready.num_parameters != model_->num_parameters()) {
    const std::string why = fmt::format(
        "worker {} built a model with {} parameters but the server's has {}; run "
        "the same psgd version everywhere",
        w, ready.num_parameters, model_->num_parameters());
    if (slot.rejoining && phase_ == Phase::kTraining) {
      drop_replacement(w, why);
    } else {
      fail(why);
    }
    return;
  }
  // The worker proves which rows it holds: its fingerprint of its samples as it read them must
  // be the server's over the rows it assigned (another file, order or version trains silently on
  // the wrong rows, possibly the server's test rows). --local_data: its own rows, checked by
  // on_local_data() instead.
  if (const std::string mine =
          spec_.local_data ? ready.data_sha256 : nn::rows_hash(*plan_->train(), slot.samples);
      ready.data_sha256 != mine) {
    const std::string why = fmt::format(
        "worker {} ({}) holds other training rows than the server assigned it: its {} gives "
        "sha256 {}... over its {} rows, the server's copy {}...; give every worker an identical "
        "copy of the dataset (or --ship_data auto to send it the rows)",
        w, slot.host(), ready.dataset, ready.data_sha256.substr(0, 12), ready.samples,
        mine.substr(0, 12));
    if (slot.rejoining && phase_ == Phase::kTraining) {
      drop_replacement(w, why);
    } else {
      fail(why);
    }
    return;
  }
  if (slot.rejoining && phase_ == Phase::kTraining) {
    on_rejoined(w);
    return;
  }
  if (phase_ != Phase::kLoading || slot.ready) {
    fail(fmt::format("worker {} sent Ready twice or out of turn", w));
    return;
  }
  workers_.set_ready(w, ready.peer_port);
  // Peer ports: the ring's links need everyone's, Gloo worker 0's (its store), shm none.
  if (needs_peers() && ready.peer_port <= 0 &&
      (spec_.allreduce_backend == "ring" || (w == 0 && spec_.allreduce_backend == "gloo"))) {
    fail(fmt::format("worker {} opened no port for its peers; --psgd {} needs one", w, spec_.psgd));
    return;
  }
  if (shipper_ && ship_start_ >= 0)
    data_seconds_ = std::max(data_seconds_, clock_.now() - ship_start_);
  fmt::print("init_server: worker {} ready: {} samples, {} thread(s), BLAS: {}\n", w,
             fmt_count(static_cast<double>(ready.samples)), ready.threads, ready.detail);
  std::fflush(stdout);
  if (workers_.all_ready()) {
    if (needs_peers()) {
      send_peer_table();
    } else {
      start_training();
    }
  }
}

const char* Server::stage_before_training() const {
  return needs_peers() && workers_.all_ready() ? "linking up with each other" : "loading";
}

bool Server::needs_peers() const {
  return strategy_of(spec_).topology == Topology::kPeerToPeer;
}

// Peer-to-peer strategies: every worker learns where the others listen (for the gloo backend
// only worker 0's rendezvous store matters), links up, and says PeersUp; training starts when all
// have. The join timeout still runs, so a mesh that cannot form ends the run.
void Server::send_peer_table() {
  // shm: one segment in one /dev/shm. Workers that name different machines would wait for it
  // until --io_timeout; say so now.
  if (spec_.allreduce_backend == "shm") {
    for (int w = 1; w < workers_.size(); ++w) {
      if (workers_[w].host() != workers_[0].host()) {
        fail(fmt::format(
            "--allreduce_backend shm needs every worker on one machine, but worker 0 reports the "
            "host name {} and worker {} {}; use --allreduce_backend ring",
            workers_[0].host(), w, workers_[w].host()));
        return;
      }
    }
  }
  auto table = std::make_shared<const Message>([&] {
    PeerTable t;
    for (int w = 0; w < workers_.size(); ++w) {
      t.hosts.push_back(workers_[w].address);
      t.ports.push_back(workers_[w].peer_port);
    }
    t.key = net::make_nonce();  // this job's peer key (network/auth.h, peer_proof)
    return t;
  }());
  for (int w = 0; w < workers_.size(); ++w)
    workers_[w].link->send(table);
  fmt::print("init_server: workers are linking up with each other ({} allreduce)\n",
             spec_.allreduce_backend);
  std::fflush(stdout);
}

void Server::on_peers_up(int w) {
  const auto& slot = workers_[w];
  if (phase_ != Phase::kLoading || !needs_peers() || slot.peers_up || !slot.ready) {
    fail(fmt::format("worker {} sent PeersUp out of turn", w));
    return;
  }
  workers_.set_peers_up(w);
  if (workers_.all_peers_up()) start_training();
}

}  // namespace psgd
