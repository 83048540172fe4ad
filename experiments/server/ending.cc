// init_server's TCP driver, part 3: the end of a run (experiments/server/driver.h): completed,
// failed, or interrupted by a signal; the outputs written whole on a thread of their own while
// the links stay alive, then the final status told to every worker.
#include <fmt/format.h>

#include <cmath>
#include <csignal>

#include "core/error.h"
#include "experiments/divergence.h"
#include "experiments/format.h"
#include "experiments/server/driver.h"

namespace psgd {

namespace {
std::string signal_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : fmt::format("signal {}", sig);
}
}  // namespace

void Server::wait_for_signal() {
  signals_.async_wait([this](std::error_code ec, int sig) {
    if (!ec) on_signal(sig);
  });
}

void Server::on_signal(int sig) {
  if (phase_ == Phase::kDone) return;
  if (phase_ == Phase::kTraining && spec_.checkpoint_every > 0 && stopping_ == 0 &&
      !role_->finished()) {
    // The role's state (and the workers') can be saved right after an update: wait for the next
    // one. Peer-to-peer workers send theirs only at the iterations checkpoints fall due.
    stopping_ = sig;
    fmt::print(stderr,
               "init_server: {}: stopping after the next {}, which is checkpointed (waiting at "
               "most --dead_after {} s; send it again to stop at once)\n",
               signal_name(sig),
               checkpointer_->workers_offer()
                   ? "checkpoint iteration (every --checkpoint_every iterations and epoch end)"
                   : "update",
               opts_.dead_after);
    std::fflush(stderr);
    stop_timer_.expires_after(seconds(opts_.dead_after));
    stop_timer_.async_wait([this](std::error_code ec) {
      if (ec || phase_ == Phase::kDone) return;
      interrupt(stopping_, "no update came to checkpoint within --dead_after");
    });
    wait_for_signal();
    return;
  }
  interrupt(sig, spec_.checkpoint_every > 0 ? "stopped at once" : "no checkpoints were asked for");
}

void Server::interrupt(int sig, const std::string& checkpoint_note) {
  if (phase_ == Phase::kDone) return;
  std::string note = checkpoint_note;
  const std::int64_t last = checkpointer_ ? checkpointer_->last_iteration() : -1;
  if (last >= 0) {
    note += fmt::format("; checkpoint.bin holds iteration {}: continue the run with {}", last,
                        resume_command());
  } else if (resumed_) {
    note += fmt::format("; checkpoint.bin still holds iteration {}: {}", resumed_->iteration,
                        resume_command());
  }
  record_interrupted(sig, note);
  stop(sig, note);
}

void Server::record_interrupted(int sig, const std::string& note) {
  events_.push_back({{"event", "interrupted"},
                     {"signal", signal_name(sig)},
                     {"iteration", iterations_done()},
                     {"wall_s", clock_.now()},
                     {"checkpoint", note}});
}

void Server::stop(int sig, const std::string& note) {
  fmt::print(stderr, "init_server: interrupted by {}: {}\n", signal_name(sig), note);
  std::fflush(stderr);
  exit_code_ = 128 + sig;
  finish("interrupted", false);
}

void Server::fail(const std::string& why, int exit_code) {
  if (phase_ == Phase::kDone) return;
  fmt::print(stderr, "init_server: {}\n", why);
  // A failed run resumes from its last checkpoint (README "Checkpoint and resume"): say how.
  const std::int64_t last = checkpointer_ ? checkpointer_->last_iteration() : -1;
  if (last >= 0 || resumed_) {
    fmt::print(stderr, "init_server: checkpoint.bin holds iteration {}: continue the run with {}\n",
               last >= 0 ? last : resumed_->iteration, resume_command());
  }
  exit_code_ = exit_code;
  finish(fmt::format("failed: {}", why), false);
}

const Divergence* Server::note_divergence() {
  if (!recorder_ || !recorder_->divergence()) return nullptr;
  const Divergence& d = *recorder_->divergence();
  if (!divergence_said_) {
    divergence_said_ = true;
    events_.push_back(announce_divergence(d, spec_, "wall_s", clock_.now()));
  }
  return &d;
}

bool Server::check_divergence() {
  if (phase_ != Phase::kTraining || divergence_said_) return false;
  const Divergence* d = note_divergence();
  if (!d || spec_.on_divergence != "stop") return false;
  exit_code_ = 1;
  finish(divergence_status(*d, spec_), false);
  return true;
}

void Server::finish(const std::string& status, bool ok) {
  if (phase_ == Phase::kDone) return;
  const bool trained = phase_ == Phase::kTraining;
  phase_ = Phase::kDone;
  if (ok) exit_code_ = 0;
  for (const auto& [c, hs] : pending_)
    c->close();
  pending_.clear();
  for (auto& a : acceptors_) {
    std::error_code ec;
    a->close(ec);
  }
  join_timer_.cancel();
  progress_timer_.cancel();
  stop_timer_.cancel();
  signals_.cancel();
  // The outputs are written on a thread of their own: the links stay alive meanwhile (heartbeats),
  // and the workers learn the final status, which a failed write can still change, only then.
  // First the workers' last log and trace pieces (a few seconds at most).
  collect_results([this, status, ok, trained] {
    results_closed_ = true;
    writing_.emplace(asio::make_work_guard(io_));
    writer_ = std::async(std::launch::async, [this, status, ok, trained] {
      const auto [final_status, final_ok] = write_outputs(status, ok, trained);
      asio::post(io_, [this, s = final_status, o = final_ok] { tell_workers(s, o); });
    });
  });
}

void Server::collect_results(std::function<void()> then) {
  if (!run_) {
    then();  // no run directory to write them to
    return;
  }
  for (int w = 0; w < workers_.size(); ++w) {
    const auto& slot = workers_[w];
    if (slot.link && slot.link->is_open() && !results_.complete(w)) slot.link->send(LogRequest{});
  }
  await_results(clock_.now() + kResultsWaitSeconds, std::move(then));
}

void Server::await_results(double deadline, std::function<void()> then) {
  bool waiting = false;
  for (int w = 0; w < workers_.size(); ++w) {
    const auto& slot = workers_[w];
    waiting = waiting || (slot.link && slot.link->is_open() && !results_.complete(w));
  }
  if (!waiting || clock_.now() >= deadline) {
    then();
    return;
  }
  results_timer_.expires_after(std::chrono::milliseconds(20));
  results_timer_.async_wait([this, deadline, then = std::move(then)](std::error_code ec) mutable {
    if (!ec) await_results(deadline, std::move(then));
  });
}

void Server::tell_workers(const std::string& status, bool ok) {
  writing_.reset();
  for (int w = 0; w < workers_.size(); ++w) {
    auto& slot = workers_[w];
    if (!slot.link) continue;
    slot.link->send(Finish{.status = status, .ok = ok});
    slot.link->close_after_writes();
  }
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

std::pair<std::string, bool> Server::write_outputs(std::string status, bool ok, bool trained) {
  // A write that fails ends a run that had completed as "failed: cannot write <file>: <why>"; a
  // run that had already failed or been interrupted keeps its status and the event says what
  // could not be written. Every file is whole or absent (core/files.h).
  auto write_failed = [&](const std::exception& e) {
    fmt::print(stderr, "init_server: {}\n", e.what());
    events_.push_back({{"event", "write_failed"}, {"why", e.what()}});
    if (ok) {
      status = fmt::format("failed: {}", e.what());
      ok = false;
    }
    if (exit_code_ == 0) exit_code_ = 1;
  };
  auto attempt = [&](auto&& write) {
    try {
      write();
    } catch (const std::exception& e) {
      write_failed(e);
    }
  };
  if (recorder_) attempt([&] { recorder_->write_evaluated(/*wait=*/true); });
  // The last evaluations (in the background, experiments/recorder.h) may show a divergence only
  // now: a run that had completed has then diverged after all.
  if (const Divergence* d = note_divergence(); d && ok && spec_.on_divergence == "stop") {
    status = divergence_status(*d, spec_);
    ok = false;
    exit_code_ = 1;
  }
  if (trained) {
    attempt([&] {
      if (recorder_) recorder_->load_evaluated_model();  // the averaged model, if any
      model_->save(run_->path());
    });
  }
  if (timeline_) attempt([&] { timeline_->write(run_->file("timeline.json")); });
  nlohmann::json worker_files;
  if (run_) attempt([&] { worker_files = results_.write(run_->path()); });
  for (const auto& entry : worker_files) {
    if (entry.contains("missing")) {
      fmt::print(stderr, "init_server: worker {}'s log and trace (workers/{}/): {}\n",
                 entry["worker"].get<int>(), entry["worker"].get<int>(),
                 entry["missing"].get<std::string>());
    }
  }
  if (recorder_) {
    nlohmann::json extra{{"events", events_},
                         {"lost_workers", workers_.lost_workers()},
                         {"checkpoints_written", checkpointer_ ? checkpointer_->written() : 0},
                         {"workers_at_end", workers_.present()},
                         {"resumed", resumed_.has_value()},
                         {"job_id", id_.job_id},
                         {"worker_files", worker_files}};
    // --local_data: each worker's own file as it reported it (null: it never did).
    if (spec_.local_data) extra["local_data"] = local_reports_;
    // A fingerprint of the final global model: two runs that end with bit-identical
    // parameters (an interrupted-and-resumed run and an uninterrupted one) have the same.
    if (trained) extra["parameters_sha256"] = sha256_hex(model_->parameters());
    try {
      recorder_->finish(status, ok, iterations_done(), extra);
    } catch (const std::exception& e) {
      fmt::print(stderr, "init_server: the run's summary could not be written: {}\n", e.what());
      if (ok) status = fmt::format("failed: {}", e.what());
      ok = false;
      if (exit_code_ == 0) exit_code_ = 1;
    }
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
    fmt::print(
        "init_server: run directory {} (summary.json, metrics.csv, workers.csv, each worker's "
        "log.txt and trace.csv in workers/<id>/)\n",
        run_->path());
  }
  std::fflush(stdout);
  return {status, ok};
}

}  // namespace psgd
