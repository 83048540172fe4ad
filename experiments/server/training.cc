// init_server's TCP driver, part 2: training, lost and returning workers, checkpoints, and the
// end of the run (experiments/server/driver.h). Part 1, driver.cc, sets up, joins and loads.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <csignal>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/server/driver.h"
#include "psgd/factory.h"

namespace psgd {

void Server::WorkerTransport::deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) {
  PSGD_CHECK(to >= 0 && to < server_.spec_.node_count, "the server's role addressed node {}", to);
  auto& slot = server_.workers_[to];
  if (slot.link && !slot.rejoining) slot.link->send_frame(frame);
}

Traffic Server::traffic_of(int w) const {
  if (!transport_) return {};
  const LinkTraffic t = transport_->traffic(w);
  return Traffic{.up = t.received, .down = t.sent};
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

void Server::start_training() {
  join_timer_.cancel();
  // From here on both sides send heartbeats on an idle link, so silence means a dead peer.
  for (int w = 0; w < workers_.size(); ++w) {
    workers_[w].link->set_read_timeout(opts_.dead_after);
    workers_[w].link->start_heartbeats(opts_.heartbeat_interval);
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
  transport_ = std::make_unique<WorkerTransport>(*this);
  role_ = make_server_role(spec_, schedule_,
                           ServerContext{.parameters = model_->parameters(),
                                         .sgd = sgd_options(spec_),
                                         .uplink = uplink_codec_spec(spec_, 0),
                                         .downlink = downlink_codec_spec(spec_),
                                         .clock = &clock_,
                                         .observer = observer});
  if (resumed_) {
    role_->restore(resumed_->role_state);  // checked by Checkpointer::load()
    resumed_->role_state = {};
    resumed_->parameters = {};
  }
  int on_shm = 0;
  for (int w = 0; w < workers_.size(); ++w)
    on_shm += workers_[w].link->shared_memory();
  if (on_shm > 0) {
    fmt::print("init_server: {} of {} workers exchange frames through shared memory\n", on_shm,
               workers_.size());
  }
  if (timeline_) timeline_->set_worker_hosts(workers_.hosts());
  recorder_->set_worker_hosts(workers_.hosts());
  recorder_->set_data_traffic(shipper_ ? shipper_->wire_bytes() : 0, data_seconds_);
  recorder_->start();
  if (timeline_) timeline_->start();
  phase_ = Phase::kTraining;
  arm_progress_timer();
  Outbox out;
  role_->on_start(out);
  transport_->send(out);
}

void Server::on_training_message(int w, const Message& message, std::size_t bytes) {
  transport_->received(w, bytes);
  Outbox out;
  const std::int64_t iteration_before = role_->iteration();
  const int epochs_before = recorder_->epochs_done();
  try {
    role_->on_message(w, message, out);
  } catch (const ProtocolError& e) {
    fail(fmt::format("worker {} broke the protocol: {}", w, e.what()));
    return;
  }
  transport_->send(out);
  recorder_->after_dispatch(role_->iteration());
  maybe_checkpoint(iteration_before, epochs_before);
  if (role_->finished()) finish("completed", true);
}

void Server::maybe_checkpoint(std::int64_t iteration_before, int epochs_before) {
  if (phase_ == Phase::kDone) return;
  bool wrote = false;
  try {
    wrote =
        checkpointer_->maybe_write(*role_, *recorder_, model_->parameters(), events_,
                                   iteration_before, epochs_before, run_->file(kCheckpointFile));
  } catch (const IoError& e) {
    fail(fmt::format("cannot write the checkpoint: {}", e.what()));
    return;
  }
  if (wrote && opts_.crash_after_checkpoints > 0 &&
      checkpointer_->written() == opts_.crash_after_checkpoints) {
    fmt::print(stderr, "init_server: --crash_after_checkpoints {}: killing this server\n",
               checkpointer_->written());
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
}

void Server::on_worker_lost(int w, const std::string& why) {
  const std::string what = fmt::format("lost worker {} ({}): {}", w, workers_[w].host(), why);
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
  workers_.lose(w);
  transport_->send(out);
  if (workers_.all_lost()) {
    fail("every worker was lost");
    return;
  }
  if (role_->finished()) finish("completed", true);
}

void Server::take_over(const ConnPtr& conn, const Hello& hello) {
  const std::string address = conn->peer().substr(0, conn->peer().rfind(':'));
  const int w = workers_.take_over(conn, hello, address);
  if (w < 0) {
    refuse(conn, fmt::format("this job already has its {} workers (during training a client can "
                             "join only to replace a lost one)",
                             spec_.node_count));
    return;
  }
  workers_[w].samples = plan_->placement().samples_of(w);
  const Job job = make_job(w, worker_threads(w));
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
  Outbox out;
  if (!role_->on_worker_rejoined(w, out)) {
    drop_replacement(w, fmt::format("{} cannot take a replacement worker", spec_.psgd));
    return;
  }
  workers_.rejoined(w);
  auto& slot = workers_[w];
  slot.link->set_read_timeout(opts_.dead_after);
  slot.link->start_heartbeats(opts_.heartbeat_interval);
  events_.push_back({{"event", "worker_rejoined"},
                     {"worker", w},
                     {"host", slot.host()},
                     {"pid", slot.hello.pid},
                     {"iteration", role_->iteration()},
                     {"wall_s", clock_.now()}});
  fmt::print("init_server: worker {} is back ({}, pid {}) at iteration {}\n", w, slot.host(),
             slot.hello.pid, role_->iteration());
  std::fflush(stdout);
  transport_->send(out);
}

void Server::drop_replacement(int w, const std::string& why) {
  auto& slot = workers_[w];
  spdlog::warn("the replacement for worker {} ({}) is dropped: {}", w, slot.host(), why);
  if (slot.link) {
    slot.link->send(ErrorMessage{why});
    slot.link->close_after_writes();
  }
  workers_.drop_replacement(w);
}

void Server::record_lost(int w, const std::string& why, bool carried_on) {
  events_.push_back({{"event", "worker_lost"},
                     {"worker", w},
                     {"host", workers_[w].host()},
                     {"iteration", role_->iteration()},
                     {"wall_s", clock_.now()},
                     {"why", why},
                     {"carried_on", carried_on}});
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
  for (int w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    if (!slot.link) continue;
    slot.link->send(Finish{.status = status, .ok = ok});
    slot.link->close_after_writes();
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
  write_outputs(status, ok, trained);
  // Workers get a few seconds to read Finish; the server exits as soon as every link has drained
  // (each worker read its Finish and closed its end), and closes whatever is left after that.
  close_when_drained(clock_.now() + 5);
}

void Server::close_when_drained(double deadline) {
  bool open = false;
  for (int w = 0; w < workers_.size(); ++w)
    open = open || (workers_[w].link && workers_[w].link->is_open());
  if (!open) return;
  if (clock_.now() >= deadline) {
    for (int w = 0; w < workers_.size(); ++w)
      if (workers_[w].link) workers_[w].link->close();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(20));
  shutdown_timer_.async_wait([this, deadline](std::error_code ec) {
    if (!ec) close_when_drained(deadline);
  });
}

void Server::write_outputs(const std::string& status, bool ok, bool trained) {
  try {
    if (trained && recorder_) recorder_->load_evaluated_model();  // the averaged model, if any
    if (trained) model_->save(run_->path());
    if (timeline_) timeline_->write(run_->file("timeline.json"));
    if (recorder_) {
      nlohmann::json extra{{"events", events_},
                           {"lost_workers", workers_.lost_workers()},
                           {"checkpoints_written", checkpointer_ ? checkpointer_->written() : 0},
                           {"workers_at_end", workers_.present()},
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
}

}  // namespace psgd
