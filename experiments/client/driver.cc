// client's TCP driver (experiments/client/client.h): gets its Job and data (worker_data.h), builds
// its worker (experiments/worker_setup.h) on a loading thread, links up with its peers where the
// strategy needs them (peers.cc), and drives the worker role until Finish. connect.cc dials the
// server, runs the handshake (network/handshake.h), retries, rejoins and leaves. Everything but
// the loading and a role's detached computation (compute_thread.h) runs on the io_context's
// thread. About 500 lines: the client's states (job, data or its own file under --local_data,
// peers, training) are one state machine, read best in one file.
#include <fmt/format.h>
#include <unistd.h>
#include <asio.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "core/clock.h"
#include "core/error.h"
#include "experiments/client/client.h"
#include "experiments/client/compute_thread.h"
#include "experiments/client/driver.h"
#include "experiments/client/worker_data.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "experiments/worker_setup.h"
#include "network/handshake.h"
#include "network/tcp/connection.h"
#include "network/tcp/peer_mesh.h"
#include "network/transport.h"
#include "nn/data_pack.h"
#include "nn/gloo_allreduce.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "nn/version.h"
#include "psgd/checkpoint.h"
#include "psgd/factory.h"

namespace psgd {

void Client::say(const std::string& line, bool error) {
  const std::string who = worker_ >= 0 ? fmt::format("client[{}]", worker_) : "client";
  std::FILE* out = error ? stderr : stdout;
  fmt::print(out, "{}: {}\n", who, line);
  std::fflush(out);
  if (worker_ >= 0) results_.log(fmt::format("{:.3f} {}: {}", clock_.now(), who, line));
}

void Client::send_results(bool last) {
  if (results_done_ || worker_ < 0 || !conn_ || !conn_->is_open()) return;
  for (WorkerLog& piece : results_.take(last))
    conn_->send(std::move(piece));
  results_done_ = last;
}

void Client::arm_results_timer() {
  results_timer_.expires_after(std::chrono::seconds(1));
  results_timer_.async_wait([this](std::error_code ec) {
    if (ec || done_) return;
    send_results(/*last=*/false);
    arm_results_timer();
  });
}

void Client::background(std::function<void()> work, std::function<void()> done) {
  PSGD_CHECK(!loading_, "a second background task while one runs");
  loading_ = true;
  loading_guard_.emplace(asio::make_work_guard(io_));
  loader_ = std::async(std::launch::async,
                       [this, work = std::move(work), done = std::move(done)]() mutable {
                         std::string error;
                         try {
                           work();
                         } catch (const std::exception& e) {
                           error = e.what();
                         }
                         asio::post(io_, [this, error, done = std::move(done)] {
                           loading_ = false;
                           loading_guard_.reset();
                           if (done_) return;
                           if (!error.empty()) {
                             give_up(error, true);
                             return;
                           }
                           try {
                             done();
                           } catch (const Error& e) {
                             give_up(e.what(), true);
                           }
                         });
                       });
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
  if (const auto* plan = std::get_if<LocalPlan>(&message)) {
    on_local_plan(*plan);
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
  if (std::holds_alternative<StateRequest>(message)) {
    send_state();
    return;
  }
  if (std::holds_alternative<LogRequest>(message)) {
    send_results(/*last=*/true);
    return;
  }
  if (!role_) {
    give_up(fmt::format("the server sent {} before the job", type_name(type_of(message))), true);
    return;
  }
  if (!training_ && from == kServer) {
    // Training has started: the server is expected to answer within --dead_after from now on.
    training_ = true;
    conn_->set_read_timeout(opts_.dead_after);
  }
  links_->received(from, bytes);
  if (const auto* reform = std::get_if<RingReform>(&message)) on_ring_reform(*reform);
  deliver(message);
}

void Client::deliver(const Message& message) {
  if (done_) return;
  try {
    Outbox out;
    const WorkerAction action = role_->on_message(message, out);
    links_->send(out);
    offer_state();
    if (action.compute) compute_next(action.detached);
  } catch (const Error& e) {
    give_up(e.what(), true);
  }
}

void Client::send_state(bool with_params) {
  if (!role_) {
    give_up("the server asked for this worker's state before the job", true);
    return;
  }
  WorkerState state{.iteration = role_->iterations_done(), .state = parts_->snapshot()};
  if (with_params) {
    const auto params = parts_->trainer().parameters();
    state.params.assign(params.begin(), params.end());
  }
  conn_->send(std::move(state));
}

// Peer-to-peer strategies: the workers hold the model, so each sends its state (and parameters)
// unasked when its iteration count reaches a checkpoint, by the rule the server checkpoints by.
void Client::offer_state() {
  if (spec_.checkpoint_every <= 0 || strategy_of(spec_).topology != Topology::kPeerToPeer) return;
  const std::int64_t now = role_->iterations_done();
  // One iteration at a time; the jump to a resumed run's first iteration is not one.
  if (now == offered_iterations_ + 1 &&
      checkpoint_due(schedule_, spec_.checkpoint_every, offered_iterations_, now)) {
    send_state(/*with_params=*/true);
  }
  offered_iterations_ = now;
}

// One compute step per turn of the event loop: between steps the links write what was queued,
// read what arrived and send their heartbeats. (Steps run back to back in one call would starve
// them: a strategy that computes many steps without waiting for a message, such as allreduce on
// Gloo, sent no heartbeat and was declared dead after --dead_after.) A detached step (allreduce
// --overlap) computes on the compute thread (compute_thread.h) while this thread goes on
// delivering; compute_step() runs here once it is done.
void Client::compute_next(bool detached) {
  if (detached) {
    if (!compute_) compute_ = std::make_unique<ComputeThread>(io_);
    compute_->run([this] { role_->compute_detached(); },
                  [this](std::exception_ptr error) {
                    abandon_timer_.cancel();
                    if (done_) return;
                    try {
                      if (error) std::rethrow_exception(error);
                    } catch (const IoError& e) {
                      // The collective (shm, Gloo) failed, usually because another worker died
                      // or left: the server's verdict names the cause, as for a ring's peer.
                      if (collective_) {
                        on_peer_error(-1, e.what());
                      } else {
                        give_up(e.what(), true);
                      }
                      return;
                    } catch (const std::exception& e) {
                      give_up(e.what(), true);
                      return;
                    }
                    step();
                  });
    return;
  }
  asio::post(io_, [this] {
    if (!done_) step();
  });
}

void Client::abandon_stuck_collective() {
  if (opts_.serve || !compute_ || !compute_->busy() || !collective_ ||
      collective_->interruptible()) {
    return;
  }
  abandon_timer_.expires_after(std::chrono::seconds(2));
  abandon_timer_.async_wait([this](std::error_code ec) {
    if (ec || !compute_ || !compute_->busy()) return;
    say(fmt::format("the {} allreduce in progress cannot be interrupted (a peer stopped without "
                    "leaving): exiting without waiting for it to time out (--io_timeout)",
                    collective_->name()),
        /*error=*/true);
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(exit_code_);  // its threads and Gloo's are inside the allreduce: no destructors
  });
}

void Client::step() {
  try {
    Outbox out;
    const WorkerAction action = role_->compute_step(out);
    links_->send(out);
    offer_state();
    if (action.compute) compute_next(action.detached);
  } catch (const Error& e) {
    give_up(e.what(), true);
  }
}

LinkTraffic Client::traffic() const {
  LinkTraffic sum;
  for (NodeId peer = kServer; links_ && peer < spec_.node_count; ++peer) {
    const LinkTraffic t = links_->traffic(peer);
    sum.sent += t.sent;
    sum.received += t.received;
  }
  return sum;
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
  if (spec_.psgd == "allreduce" && spec_.allreduce_backend == "shm" &&
      opts_.shared_memory == "off") {
    // Before any data is shipped or loaded.
    give_up(
        "--allreduce_backend shm sums the workers' gradients in shared memory, and this client "
        "runs with --shared_memory off (as on an emulated LAN): run the job with "
        "--allreduce_backend ring, or this client without --shared_memory off",
        true);
    return;
  }
  try {
    // --model script:FILE: the server sent the file; it is loaded only if it arrived intact.
    script_ = received_model_file(spec_, job.model_file, job.model_sha256);
  } catch (const ConfigError& e) {
    give_up(e.what(), true);
    return;
  }
  worker_ = job.worker_id;
  results_.log(fmt::format("{:.3f} client[{}]: worker {} of job {} (host {}, pid {})", clock_.now(),
                           worker_, worker_, handshake_->server().job_id.substr(0, 8), host_name(),
                           ::getpid()));
  arm_results_timer();
  // From now on this worker belongs to this job: should the server go away, it rejoins only it.
  session_.job_id = handshake_->server().job_id;
  threads_ = opts_.threads > 0 ? opts_.threads : std::max(1, job.threads);
  poll_window_ = std::chrono::microseconds(spec_.busy_poll_us);
  job_ = job;
  // Until training starts the server may be busy for a while (shipping data to others, its first
  // evaluation): silence is tolerated for --io_timeout, heartbeats or not.
  conn_->set_read_timeout(std::max(opts_.dead_after, spec_.io_timeout));
  if (spec_.local_data) {
    nn::set_compute_threads(threads_);
    start_local();
    return;
  }
  try {
    nn::set_compute_threads(threads_);
    nn::keep_freed_memory();
    data_ = std::make_unique<WorkerData>(spec_, job_,
                                         opts_.dataset.empty() ? spec_.dataset : opts_.dataset);
  } catch (const Error& e) {
    give_up(e.what(), true);
    return;
  }
  // Reading the data may take long (a large dataset, a slow disk): it runs on another thread
  // while the link keeps its heartbeats.
  auto start = std::make_shared<WorkerData::Start>();
  background([this, start] { *start = data_->begin(); },
             [this, start] {
               if (!start->note.empty()) say(start->note);
               if (start->offer) {
                 ship_start_ = clock_.now();
                 conn_->send(*start->offer);
                 return;
               }
               start_with(std::move(*start->samples));
             });
}

void Client::on_data_chunk(const DataChunk& chunk) {
  if (!data_ || role_ || loading_) {
    throw ProtocolError("the server sent DataChunk without --ship_data or after the data");
  }
  std::optional<nn::Dataset> samples = data_->on_chunk(chunk);
  if (!samples) return;
  say(fmt::format("{} in {}", data_->received_note(), fmt_duration(clock_.now() - ship_start_)));
  start_with(std::move(*samples));
}

void Client::start_with(nn::Dataset samples) {
  try {
    if (spec_.psgd == "allreduce" && spec_.allreduce_backend != "ring") {
      collective_ = std::make_unique<JoinedCollective>(spec_.allreduce_backend);
      if (spec_.allreduce_backend == "gloo" && worker_ == 0) {
        collective_->store =
            std::make_unique<nn::GlooStoreHost>(spec_.node_count, 0, spec_.io_timeout);
        peer_port_ = collective_->store->port();
      }
    }
  } catch (const Error& e) {
    give_up(e.what(), true);
    return;
  }
  auto data = std::make_shared<nn::Dataset>(std::move(samples));
  background([this, data] { build_worker(std::move(*data)); }, [this] { ready(); });
}

void Client::build_worker(nn::Dataset samples) {
  const WorkerSetup setup{
      .worker = worker_,
      .block_ids = job_.block_ids,
      .block_sizes = job_.block_sizes,
      .normalizer = {.kind = spec_.normalize, .shift = job_.norm_shift, .scale = job_.norm_scale},
      .train_size = job_.train_size,
      .start_batch = job_.start_batch,
      .script = script_};
  // The proof of which rows this worker holds, over its samples as read (before normalising).
  data_sha256_ = nn::content_hash(samples);
  setup.normalizer.apply(samples);
  const auto count = static_cast<std::int64_t>(samples.size());
  samples_ = count;
  auto split = std::make_shared<nn::DataSplit>();
  split->train = std::move(samples);
  std::vector<std::int64_t> rows(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i)
    rows[static_cast<std::size_t>(i)] = i;
  // The schedule is the job's, over the whole training set, not this worker's share of it.
  schedule_ = make_schedule(spec_, job_.train_size);
  parts_ = std::make_unique<WorkerParts>(
      spec_, schedule_, setup, std::move(split), std::move(rows),
      WorkerEnv{.clock = &clock_,
                // On the compute thread a pause ends when the run does (ComputeThread::stop).
                .pause =
                    [this](double s) {
                      if (compute_ && !io_.get_executor().running_in_this_thread()) {
                        compute_->sleep(s);
                      } else {
                        std::this_thread::sleep_for(std::chrono::duration<double>(s));
                      }
                    },
                .work = &cpu_clock_,
                .slowdown = opts_.slowdown,
                .collective = collective_.get(),
                // A detached step records its row on the compute thread: the links and the log
                // belong to the event thread, so the row goes there (before the step's end, which
                // is posted after it) and takes the bytes counted by then.
                .trace =
                    [this](const TraceRow& row) {
                      if (io_.get_executor().running_in_this_thread()) {
                        results_.row(row);
                        return;
                      }
                      asio::post(io_, [this, r = row]() mutable {
                        const LinkTraffic bytes = traffic();
                        r.bytes_sent = bytes.sent;
                        r.bytes_received = bytes.received;
                        results_.row(r);
                      });
                    },
                .traffic =
                    [this] {
                      return io_.get_executor().running_in_this_thread() ? traffic()
                                                                         : LinkTraffic{};
                    }});
  if (parts_->trainer().num_parameters() != job_.num_parameters) {
    throw ConfigError(fmt::format(
        "this worker's {} model has {} parameters but the server's has {}; run the same psgd "
        "version everywhere",
        spec_.model, parts_->trainer().num_parameters(), job_.num_parameters));
  }
  // A resumed run: continue from this worker's state at the checkpoint.
  parts_->restore(job_.worker_state);
  job_.worker_state = {};
}

void Client::ready() {
  role_ = &parts_->role();
  // Frames carry the parameters (or a gradient) and the model's buffers.
  const std::size_t model_values =
      parts_->trainer().num_parameters() + parts_->trainer().num_buffers();
  links_ = std::make_unique<Links>(*this, spec_.node_count);
  if (!collective_ && strategy_of(spec_).topology == Topology::kPeerToPeer) {
    mesh_ = std::make_unique<net::PeerMesh>(
        io_, worker_, spec_.node_count,
        net::ConnectionOptions{.max_body_bytes = training_frame_limit(model_values),
                               .read_timeout_s = spec_.io_timeout});
    // On the interface the server link uses (the address the server hands the peers), not on
    // every interface: a job on loopback stays on loopback.
    peer_port_ = mesh_->listen(conn_->local_address());
  }
  conn_->set_max_body_bytes(training_frame_limit(model_values));
  if (job_.start_batch > 0) {
    say(fmt::format("continuing worker {}'s batch order after its first {} batches", worker_,
                    job_.start_batch));
  }
  say(fmt::format("worker {} of {}: {} samples of {}, {}, {} thread(s), {} {}{}", worker_,
                  spec_.node_count, fmt_count(static_cast<double>(samples_)),
                  opts_.dataset.empty() ? spec_.dataset : opts_.dataset,
                  parts_->trainer().describe(), threads_, spec_.psgd, spec_.codec,
                  parts_->straggling()
                      ? fmt::format(", slowdown {} delay {}", opts_.slowdown, spec_.delay)
                      : ""));
  if (mesh_)
    say(fmt::format("listening for its peers on {}:{}", conn_->local_address(), peer_port_));
  conn_->send(Ready{.worker_id = worker_,
                    .num_parameters = job_.num_parameters,
                    .samples = samples_,
                    .threads = threads_,
                    .detail = nn::blas_description(),
                    .peer_port = peer_port_,
                    .data_sha256 = data_sha256_,
                    .dataset = opts_.dataset.empty() ? spec_.dataset : opts_.dataset});
  job_.samples = {};
  job_.model_file = {};
  data_.reset();
  start_ = clock_.now();
}

void Client::on_finish(const Finish& finish) {
  done_ = true;
  exit_code_ = finish.ok ? 0 : 1;
  const std::int64_t iterations = role_ ? role_->iterations_done() : 0;
  if (finish.ok) {
    // Peer-to-peer workers hold the model: its hash, to compare with summary.json's
    // parameters_sha256 (the same on every worker of an allreduce ring).
    std::string model;
    if (parts_ && strategy_of(spec_).topology == Topology::kPeerToPeer) {
      model = fmt::format("; parameters sha256 {}", sha256_hex(parts_->trainer().parameters()));
    }
    say(fmt::format("done: {} ({} iterations in {}){}", finish.status, iterations,
                    fmt_duration(clock_.now() - start_), model));
  } else {
    say(fmt::format("the job ended without completing: {}", finish.status), /*error=*/true);
  }
  signals_.cancel();
  results_timer_.cancel();
  peer_grace_.cancel();  // the verdict it waited for (else the process lingers until it fires)
  stop_computing();
  if (mesh_) mesh_->close();
  conn_->close();
}

}  // namespace psgd
