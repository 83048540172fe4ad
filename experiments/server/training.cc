// init_server's TCP driver, part 2: training, lost, leaving and returning workers, and
// checkpoints (experiments/server/driver.h). driver.cc joins and loads, ending.cc ends the run.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <csignal>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/server/driver.h"
#include "experiments/strategy_events.h"
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
  // The model's buffers as they are now (the mean of the workers', psgd/common.h).
  const auto buffers = model_->buffers();
  std::copy(buffers.begin(), buffers.end(), eval_model_->buffers().begin());
  evaluating_ =
      std::async(std::launch::async, [m = eval_model_.get()] { return m->evaluate(); }).share();
  return evaluating_;
}

void Server::start_training() {
  join_timer_.cancel();
  // From here on both sides send heartbeats on an idle link, so silence means a dead peer.
  for (int w = 0; w < workers_.size(); ++w) {
    watch(w, *workers_[w].link, workers_[w].hello, /*say=*/false);
  }
  // summary.json's events get what the strategy reports (a ring re-formed after a loss).
  event_sink_ = std::make_unique<StrategyEventSink>([this](const StrategyEvent& e) {
    events_.push_back(strategy_event_json(e, schedule_, plan_->placement(), "wall_s", clock_.now(),
                                          plan_->local_samples()));
    fmt::print("init_server: the ring re-formed after iteration {} with workers {} ({} of {})\n",
               e.iteration, fmt::join(e.members, ", "), e.members.size(), spec_.node_count);
    std::fflush(stdout);
  });
  std::vector<ServerObserver*> observers{recorder_.get(), event_sink_.get()};
  if (opts_.timeline) {
    timeline_ = std::make_unique<TimelineRecorder>(
        TimelineOptions{.node_count = spec_.node_count,
                        .total_iterations = schedule_.total_iterations()},
        &clock_);
    observers.push_back(timeline_.get());
  }
  observers_ = std::make_unique<ObserverFanout>(std::move(observers));
  ServerObserver* observer = observers_.get();
  transport_ = std::make_unique<WorkerTransport>(*this);
  role_ = make_server_role(spec_, schedule_,
                           ServerContext{.parameters = model_->parameters(),
                                         .buffers = model_->buffers(),
                                         .optimizer = optimizer_spec(spec_, schedule_),
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
  try {
    recorder_->start();  // evaluates the initial model
  } catch (const Error& e) {
    fail(e.what());  // the server's failure, not that of the worker whose Ready started training
    return;
  }
  if (timeline_) timeline_->start();
  phase_ = Phase::kTraining;
  arm_progress_timer();
  Outbox out;
  role_->on_start(out);
  transport_->send(out);
}

void Server::on_training_message(int w, Message&& message, std::size_t bytes) {
  transport_->received(w, bytes);
  if (checkpointer_->holds(w)) {  // sent after its state: applied once the checkpoint is written
    checkpointer_->hold(w, std::move(message), bytes);
    return;
  }
  dispatch(w, message);
}

void Server::dispatch(int w, const Message& message) {
  Outbox out;
  const std::int64_t iteration_before = role_->iteration();
  try {
    role_->on_message(w, message, out);
  } catch (const ProtocolError& e) {
    fail(fmt::format("worker {} broke the protocol: {}", w, e.what()));
    return;
  } catch (const Error& e) {
    // Roles do no I/O; their observers do: the recorder evaluates the model and writes an
    // epoch's rows (and with --save_every_epoch its model) when the round that ends it closes. A
    // disk that fails, or a model that fails on the test set, is this machine's failure, not that
    // of the worker whose gradient closed the round: left to the link's handler, the error would
    // drop that worker as lost.
    fail(e.what());
    return;
  }
  // A signalled server checkpoints the next update (peer-to-peer workers offer their state only
  // at the iterations psgd::checkpoint_due names, so there it waits for the next of those).
  const bool moved = role_->iteration() != iteration_before;
  const bool checkpoint = !checkpointer_->collecting() &&
                          (checkpointer_->due(iteration_before, role_->iteration()) ||
                           (stopping_ != 0 && moved && !checkpointer_->workers_offer()));
  if (checkpoint && !checkpointer_->workers_offer()) {
    // Before this update's messages: every worker's state then precedes what it computes next.
    const auto request = std::make_shared<const Message>(StateRequest{});
    for (int v = 0; v < workers_.size(); ++v)
      if (workers_[v].link && !workers_[v].lost && !workers_[v].rejoining)
        workers_[v].link->send(request);
  }
  transport_->send(out);
  try {
    recorder_->after_dispatch(role_->iteration());  // an epoch's rows once its evaluation is done
  } catch (const Error& e) {
    fail(e.what());  // as above: the server's failure, not the worker's
    return;
  }
  if (check_divergence()) return;
  if (role_->finished()) {
    finish("completed", true);
    return;
  }
  if (checkpoint) begin_checkpoint();
}

void Server::on_worker_state(int w, WorkerState&& state) {
  if (workers_[w].rejoining) {
    drop_replacement(w, "sent WorkerState while loading");
    return;
  }
  checkpointer_->on_state(w, std::move(state));
  if (checkpointer_->complete()) finish_checkpoint(/*abandon=*/false);
}

void Server::begin_checkpoint() {
  std::vector<int> present;
  for (int v = 0; v < workers_.size(); ++v)
    if (workers_[v].link && !workers_[v].lost && !workers_[v].rejoining) present.push_back(v);
  checkpointer_->begin(present, role_->iteration());
  if (checkpointer_->complete()) finish_checkpoint(/*abandon=*/false);
}

void Server::finish_checkpoint(bool abandon) {
  if (phase_ == Phase::kDone) return;
  // A signalled server's last checkpoint: it records the interruption too, so that the resumed
  // run's summary.json tells the whole story.
  const bool last = !abandon && stopping_ != 0;
  std::string note;
  if (last) {
    note = fmt::format("checkpoint.bin holds iteration {}: continue the run with {}",
                       role_->iteration(), resume_command());
    record_interrupted(stopping_, note);
  }
  bool wrote = false;
  if (!abandon) {
    try {
      checkpointer_->write(*role_, *recorder_, model_->parameters(), events_,
                           run_->file(kCheckpointFile));
      wrote = true;
    } catch (const IoError& e) {
      fail(e.what());  // "cannot write <run>/checkpoint.bin: No space left on device"
      return;
    } catch (const Error& e) {
      spdlog::warn("no checkpoint at iteration {}: {}", role_->iteration(), e.what());
      if (last) events_.erase(events_.size() - 1);  // not interrupted here after all
    }
  }
  if (wrote && last) {
    stop(stopping_, note);
    return;
  }
  if (wrote && opts_.crash_after_checkpoints > 0 &&
      checkpointer_->written() == opts_.crash_after_checkpoints) {
    fmt::print(stderr, "init_server: --crash_after_checkpoints {}: killing this server\n",
               checkpointer_->written());
    std::fflush(stderr);
    std::raise(SIGKILL);
  }
  // What arrived meanwhile goes to the role now, in order (it may begin the next checkpoint,
  // which holds again what follows a state).
  auto held = checkpointer_->end();
  while (!held.empty() && phase_ == Phase::kTraining) {
    Checkpointer::Held h = std::move(held.front());
    held.pop_front();
    if (!workers_[h.worker].link || workers_[h.worker].lost) continue;  // lost meanwhile
    if (checkpointer_->holds(h.worker)) {
      checkpointer_->hold(h.worker, std::move(h.message), h.bytes);
    } else {
      dispatch(h.worker, h.message);
    }
  }
}

void Server::on_worker_lost(int w, const std::string& why) {
  const std::string what = fmt::format("lost worker {} ({}): {}", w, workers_[w].host(), why);
  Outbox out;
  if (!role_->on_worker_lost(w, out)) {
    record_lost(w, why, false);
    workers_.lose(w);  // summary.json lost_workers names it
    fail(fmt::format("{}; {} cannot continue without it{}", what, spec_.psgd,
                     loss_hint(spec_, workers_.present())));
    return;
  }
  fmt::print(stderr, "init_server: {}; {} carries on with the other workers\n", what, spec_.psgd);
  std::fflush(stderr);
  record_lost(w, why, true);
  workers_.lose(w);
  transport_->send(out);
  if (workers_.all_lost()) {
    if (!role_->takes_replacements()) {
      fail("every worker was lost");
      return;
    }
    wait_for_replacements();
  }
  if (checkpointer_->collecting()) {
    // Its state will not come: this checkpoint is abandoned (the previous one stays), and what
    // the others sent meanwhile goes to the role (the lost worker's is dropped).
    spdlog::warn("the checkpoint at iteration {} is abandoned: {}", role_->iteration(), what);
    finish_checkpoint(/*abandon=*/true);
    if (phase_ != Phase::kTraining) return;
  }
  if (role_->finished()) finish("completed", true);
}

void Server::wait_for_replacements() {
  fmt::print(
      stderr,
      "init_server: every worker was lost; {} waits up to --join_timeout {} s for clients to "
      "take the lost slots (workers whose link broke redial by themselves; a new one: {})\n",
      spec_.psgd, spec_.join_timeout, client_command());
  std::fflush(stderr);
  join_timer_.expires_after(seconds(spec_.join_timeout));
  join_timer_.async_wait([this](std::error_code ec) {
    if (ec || phase_ != Phase::kTraining || !workers_.all_lost()) return;
    if (workers_.joined() > 0) {  // a replacement is still loading: give it the time it needs
      wait_for_replacements();
      return;
    }
    fail(fmt::format("every worker was lost and no client came back within --join_timeout {} s",
                     spec_.join_timeout));
  });
}

void Server::take_over(const ConnPtr& conn, const Hello& hello) {
  if (!role_->takes_replacements()) {
    refuse(conn, fmt::format("{} cannot take a replacement worker (a new client in a lost "
                             "worker's slot): the run goes on with the workers it has",
                             spec_.psgd));
    return;
  }
  const std::string address = conn->peer().substr(0, conn->peer().rfind(':'));
  const int w = workers_.take_over(conn, hello, address);
  if (w < 0) {
    refuse(conn, fmt::format("this job already has its {} workers (during training a client can "
                             "join only to replace a lost one)",
                             spec_.node_count));
    return;
  }
  if (!spec_.local_data) workers_[w].samples = plan_->placement().samples_of(w);
  results_.reopen(w);
  const Job job = make_job(w, worker_threads(w));
  fmt::print(
      "init_server: {} (pid {}) takes over lost worker {}'s slot: its data, continuing after "
      "batch {}\n",
      hello.host, hello.pid, w, job.start_batch);
  std::fflush(stdout);
  conn->set_max_body_bytes(training_frame_limit(model_->num_parameters() + model_->num_buffers()));
  watch(w, *conn, hello, /*say=*/true);  // heartbeats both ways while it loads
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
  watch(w, *slot.link, slot.hello, /*say=*/false);
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
  results_.lost(w, fmt::format("worker {} was lost: {}", w, why));
  events_.push_back({{"event", "worker_lost"},
                     {"worker", w},
                     {"host", workers_[w].host()},
                     {"iteration", iterations_done()},
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

void Server::on_worker_left(const ConnPtr& conn, int w, const Leave& leave) {
  const std::string why = fmt::format("it left ({})", leave.why);
  conn->close();  // it closes its end after the Leave
  if (phase_ == Phase::kJoining) {
    fmt::print(
        "init_server: worker {} ({}) left before the job started ({}); its slot is free "
        "for another client [{}/{}]\n",
        w, workers_[w].host(), leave.why, workers_.joined() - 1, spec_.node_count);
    std::fflush(stdout);
    workers_.leave(w);
    return;
  }
  if (workers_[w].rejoining) {
    drop_replacement(w, why);
    return;
  }
  if (phase_ == Phase::kTraining) {
    on_worker_lost(w, why);  // exactly as for a worker that died
    return;
  }
  const char* stage = stage_before_training();  // before the loss changes who is ready
  record_lost(w, why, false);
  workers_.lose(w);
  fail(fmt::format("lost worker {} ({}) while the workers were {}: {}", w, workers_[w].host(),
                   stage, why));
}

}  // namespace psgd
