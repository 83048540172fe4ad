// client's TCP driver, joining and leaving (experiments/client/driver.h): dials the server (a
// refused, reset or unanswered attempt is retried with backoff and jitter until --connect_timeout),
// runs the handshake (network/handshake.h), rejoins only its own job after losing its server
// (run_client: at most --reconnects times), and leaves cleanly on SIGTERM or SIGINT.
#include <fmt/format.h>
#include <unistd.h>
#include <asio.hpp>

#include <algorithm>
#include <csignal>
#include <thread>

#include "core/error.h"
#include "experiments/client/client.h"
#include "experiments/client/driver.h"
#include "experiments/format.h"
#include "experiments/provenance.h"
#include "network/liveness.h"
#include "network/tcp/event_loop.h"

namespace psgd {
namespace {

// Before the job says how big the model is, frames up to this size are accepted (a Job carries
// the worker's sample indices: 8 bytes per sample).
constexpr std::uint64_t kJobFrameLimit = 256ull << 20;
// Frames the server may send before it has proved the passphrase: its challenge, or why it
// refuses this worker.
constexpr std::uint64_t kAuthReplyLimit = 4096;
constexpr double kAuthSeconds = 30;  // at most, for the server's AuthChallenge

std::string signal_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : fmt::format("signal {}", sig);
}

}  // namespace

Client::Client(const ClientOptions& options, ClientSession& session)
    : opts_(options),
      session_(session),
      signals_(io_, SIGINT, SIGTERM),
      retry_timer_(io_),
      connect_timer_(io_),
      peer_grace_(io_),
      abandon_timer_(io_),
      results_timer_(io_) {}

Client::~Client() {
  // However the run ended (an exception past the event loop included), a wait in the shm group
  // (a join on the loading thread, an allreduce on the compute thread) ends now, not at
  // --io_timeout.
  stop_computing();
  if (loader_.valid()) loader_.wait();  // it uses this object's members
}

int Client::run() {
  key_ = session_.key;
  signals_.async_wait([this](std::error_code ec, int sig) {
    if (!ec) on_signal(sig);
  });
  const double wait = session_.wait_s > 0 ? session_.wait_s : 1e9;  // 0: about 30 years
  if (session_.job_id.empty()) {
    if (opts_.serve && session_.last_refusal.empty()) {
      say(session_.wait_s > 0
              ? fmt::format("resident worker: waiting for a job from {}:{} (for up to {:.0f} s; "
                            "SIGTERM stops it)",
                            opts_.ip, opts_.port, wait)
              : fmt::format("resident worker: waiting for a job from {}:{} (until SIGTERM)",
                            opts_.ip, opts_.port));
    } else if (!opts_.serve) {
      say(fmt::format("connecting to {}:{} (retrying for up to {:.0f} s while the server starts)",
                      opts_.ip, opts_.port, wait));
    }
  }
  dial_deadline_ = clock_.now() + wait;
  dial();
  // No polling while the compute thread computes: it would take the core the step runs on.
  net::run_event_loop(io_, [this] {
    return compute_ && compute_->busy() ? std::chrono::microseconds(0) : poll_window_;
  });
  return exit_code_;
}

void Client::dial() {
  if (done_) return;
  asio::ip::tcp::resolver resolver(io_);
  std::error_code ec;
  const auto endpoints = resolver.resolve(opts_.ip, std::to_string(opts_.port), ec);
  if (ec) {
    give_up(fmt::format("cannot resolve \"{}\": {}", opts_.ip, ec.message()), false);
    return;
  }
  dialing_ = std::make_unique<asio::ip::tcp::socket>(io_);
  connect_timer_.expires_after(seconds(std::max(0.1, dial_deadline_ - clock_.now())));
  connect_timer_.async_wait([this](std::error_code e) {
    if (!e && dialing_) dialing_->close();  // the attempt completes with operation_aborted
  });
  asio::async_connect(
      *dialing_, endpoints, [this](std::error_code e, const asio::ip::tcp::endpoint&) {
        connect_timer_.cancel();
        if (done_ || !dialing_) return;
        asio::ip::tcp::socket socket = std::move(*dialing_);
        dialing_.reset();
        if (e) {
          retry(e == asio::error::operation_aborted ? "the connection attempt timed out"
                                                    : e.message(),
                false);
          return;
        }
        on_connected(std::move(socket));
      });
}

void Client::on_connected(asio::ip::tcp::socket socket) {
  // The server answers at once; one that accepted but says nothing (stopped, overloaded) is
  // retried before --connect_timeout is out.
  const double answer_within =
      std::clamp(dial_deadline_ - clock_.now(), std::min(2.0, kAuthSeconds), kAuthSeconds);
  conn_ = std::make_shared<net::Connection>(
      std::move(socket),
      net::ConnectionOptions{.max_body_bytes = kAuthReplyLimit, .read_timeout_s = answer_within});
  const std::string identity = fmt::format("{}:{}", host_name(), getpid());
  handshake_ = std::make_unique<net::ClientHandshake>(
      key_, identity,
      Hello{.protocol = kProtocolVersion,
            .host = host_name(),
            .pid = static_cast<std::int32_t>(getpid()),
            .cores = static_cast<std::int32_t>(std::thread::hardware_concurrency()),
            .threads = opts_.threads,
            .version = psgd_revision(),
            .slowdown = opts_.slowdown,
            .dead_after = opts_.dead_after},
      session_.job_id);
  // Until the handshake is done only its next message (or a refusal) is read.
  conn_->set_type_filter([hs = handshake_.get()](MessageType t) { return hs->expects(t); });
  // Handlers of a connection given up for a new attempt are ignored.
  net::Connection* link = conn_.get();
  conn_->start(
      [this, link](Message&& m, std::size_t bytes) {
        if (link == conn_.get()) on_frame(std::move(m), kServer, bytes);
      },
      [this, link](const std::string& why) {
        if (link == conn_.get()) on_error(why);
      });
  conn_->send(handshake_->start());
}

void Client::retry(const std::string& why, bool connected) {
  if (done_) return;
  if (conn_) conn_->close();
  const double wait = backoff_.next();
  if (clock_.now() + wait >= dial_deadline_) {
    const std::string what =
        fmt::format("cannot connect to {}:{} within {:.0f} s: {}", opts_.ip, opts_.port,
                    session_.wait_s > 0 ? session_.wait_s : opts_.connect_timeout, why);
    give_up(session_.job_id.empty() ? what : "the server did not come back: " + what, false);
    return;
  }
  if (connected && why != last_retry_why_) {
    say(
        fmt::format("{}:{}: {}; trying again (for up to {:.0f} s more; the same failure again is "
                    "not repeated here)",
                    opts_.ip, opts_.port, why, dial_deadline_ - clock_.now()));
    last_retry_why_ = why;
  }
  retry_timer_.expires_after(seconds(wait));
  retry_timer_.async_wait([this](std::error_code ec) {
    if (!ec) dial();
  });
}

void Client::on_signal(int sig) {
  if (done_) return;
  done_ = true;
  exit_code_ = 128 + sig;
  signalled_ = sig;
  const std::string why = fmt::format("interrupted by {}", signal_name(sig));
  const bool joined = conn_ && conn_->is_open() && handshake_ && handshake_->done();
  say(fmt::format("{}: {}", why,
                  joined ? "leaving the job (the server goes on without this worker where its "
                           "strategy can, as for a lost worker)"
                         : "stopping"),
      /*error=*/true);
  // A second signal ends the process at once (a load in progress is otherwise waited for).
  std::error_code ignored;
  signals_.clear(ignored);
  stop_computing();  // a straggler's pause ends now; a step in hand runs out
  retry_timer_.cancel();
  connect_timer_.cancel();
  peer_grace_.cancel();
  if (dialing_) dialing_->close(ignored);
  results_timer_.cancel();
  if (joined) {
    send_results(/*last=*/true);
    conn_->send(Leave{.why = why});  // before the peer links drop, so the server hears it first
    conn_->close_after_writes();
  } else if (conn_) {
    conn_->close();
  }
  if (mesh_) mesh_->close();
}

void Client::on_handshake(const Message& message) {
  net::HandshakeStep step = handshake_->on_message(message);
  for (Message& m : step.send)
    conn_->send(std::move(m));
  if (!step.refusal.empty()) {
    // The server (or this worker) said no: retrying would get the same answer.
    give_up(fmt::format("{}:{}: {}", opts_.ip, opts_.port, step.refusal), false);
    return;
  }
  if (!step.done) return;
  backoff_.reset();
  conn_->set_type_filter(
      [](MessageType t) { return t != MessageType::kAuthChallenge && t != MessageType::kAuthOk; });
  conn_->set_max_body_bytes(kJobFrameLimit);
  conn_->accept_shared_memory(opts_.shared_memory == "on");
  // Heartbeats both ways from now on: this worker may wait for the others as long as the server's
  // --join_timeout allows, and a server that dies or hangs meanwhile is noticed. They come at
  // least three times within the server's --dead_after, whatever this worker's own interval
  // (network/liveness.h), so an idle worker is never taken for a dead one.
  conn_->set_read_timeout(opts_.dead_after);
  const double server_dead_after = handshake_->server().dead_after;
  const double beat = net::heartbeat_interval_for(opts_.heartbeat_interval, server_dead_after);
  conn_->start_heartbeats(beat);
  if (beat < opts_.heartbeat_interval) {
    say(
        fmt::format("--heartbeat_interval {:g} shortened to {:g} s: the server gives up a worker "
                    "silent for {:g} s (its --dead_after)",
                    opts_.heartbeat_interval, beat, server_dead_after));
  }
  const std::string job = handshake_->server().job_id.substr(0, 8);
  if (!session_.job_id.empty()) {
    say(fmt::format("the server is back (job {}, server {}); rejoining the job", job,
                    handshake_->server().server_id.substr(0, 8)));
  } else {
    say(fmt::format(
        "connected{} to job {}; waiting for the job (training starts when every "
        "worker has joined)",
        handshake_->authenticated() ? " and authenticated (the server proved the passphrase)" : "",
        job));
  }
}

void Client::on_error(const std::string& why) {
  if (done_) return;
  if (worker_ < 0) {
    // Before the job: a server that is starting, dying, full of connections or restarting.
    retry(fmt::format("the connection failed before the job arrived ({})", why), true);
    return;
  }
  lost_server_ = true;  // it had joined a job: run_client() may redial and rejoin it
  give_up(fmt::format("lost the connection to the server: {}", why), false);
}

void Client::give_up(const std::string& why, bool tell_server) {
  if (done_) return;
  done_ = true;
  if (exit_code_ == 0) exit_code_ = 1;
  if (had_job() || why != session_.last_refusal) say(why, /*error=*/true);
  if (!had_job()) session_.last_refusal = why;
  signals_.cancel();
  results_timer_.cancel();
  retry_timer_.cancel();
  connect_timer_.cancel();
  peer_grace_.cancel();
  stop_computing();  // a straggler's pause ends now; a step in hand runs out
  std::error_code ignored;
  if (dialing_) dialing_->close(ignored);
  if (mesh_) mesh_->close();
  if (tell_server && conn_ && conn_->is_open()) {
    send_results(/*last=*/true);
    conn_->send(ErrorMessage{why});
    conn_->close_after_writes();
  } else if (conn_) {
    conn_->close_after_writes();  // at once, unless a last frame (a refusal) is queued
  }
}

namespace {

// One job: join it, and rejoin it (at most --reconnects times) when its server goes away.
struct JobEnd {
  int code = 1;
  int signal = 0;
  bool had_job = false;
};
JobEnd run_job(const ClientOptions& options, const std::optional<net::AuthKey>& key, double wait_s,
               std::string& last_refusal) {
  ClientSession session{.key = key, .wait_s = wait_s, .last_refusal = last_refusal};
  while (true) {
    Client client(options, session);
    const int code = client.run();
    const JobEnd end{.code = code, .signal = client.signalled(), .had_job = client.had_job()};
    last_refusal = end.had_job ? "" : session.last_refusal;
    if (!client.lost_server()) return end;
    if (session.reconnects >= options.reconnects) {
      fmt::print(stderr, "client: lost the server; not reconnecting (--reconnects {}: {} used)\n",
                 options.reconnects, session.reconnects);
      return end;
    }
    ++session.reconnects;
    session.wait_s = options.connect_timeout;
    // The server died or the link broke: dial again (with backoff, for --connect_timeout) in
    // case it comes back, and rejoin this job (a resumed server, or a lost slot taken over).
    fmt::print(stderr,
               "client: reconnecting to {}:{} to rejoin job {} (retrying for up to {:.0f} s; "
               "reconnect {} of --reconnects {})\n",
               options.ip, options.port, session.job_id.substr(0, 8), options.connect_timeout,
               session.reconnects, options.reconnects);
  }
}

// Waits `seconds` unless SIGTERM or SIGINT comes first; returns that signal, or 0.
int pause_unless_signalled(double seconds) {
  asio::io_context io;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer timer(io, std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   std::chrono::duration<double>(seconds)));
  int got = 0;
  signals.async_wait([&](std::error_code ec, int sig) {
    if (!ec) got = sig;
    timer.cancel();
  });
  timer.async_wait([&](std::error_code) { signals.cancel(); });
  io.run();
  return got;
}

}  // namespace

int run_client(const ClientOptions& options) {
  return exit_code_of("client", [&] {
    const std::optional<net::AuthKey> key = net::load_key(options.passphrase_file);
    std::string last_refusal;
    if (!options.serve) return run_job(options, key, options.connect_timeout, last_refusal).code;
    // A resident worker: job after job, each a fresh session (a new job id is welcome; within a
    // job the rules of a one-job client hold), until a signal or --serve_timeout without a job.
    int jobs = 0;
    SteadyClock clock;
    double idle_since = clock.now();
    int attempts_without_a_job = 0;
    bool told_quiet = false;  // that a repeated refusal is no longer printed
    while (true) {
      const double left =
          options.serve_timeout > 0 ? options.serve_timeout - (clock.now() - idle_since) : 0;
      if (options.serve_timeout > 0 && left <= 0) {
        fmt::print(
            "client: resident worker: no job came within --serve_timeout {:.0f} s after "
            "{} job(s); stopping\n",
            options.serve_timeout, jobs);
        return 0;
      }
      const std::string refused_before = last_refusal;
      const JobEnd end = run_job(options, key, options.serve_timeout > 0 ? left : 0, last_refusal);
      if (end.signal != 0) {
        fmt::print("client: resident worker stopped by a signal after {} job(s)\n", jobs);
        std::fflush(stdout);
        return end.had_job ? end.code : 0;
      }
      if (end.had_job) {
        ++jobs;
        idle_since = clock.now();
        fmt::print("client: resident worker: job {} ended (exit {}); waiting for the next\n", jobs,
                   end.code);
        std::fflush(stdout);
      }
      // Whatever ended the attempt (a job's end, a full or refusing server), the next dial
      // waits a moment: a finished server may still be closing its links. Attempts refused one
      // after another wait 1, 2, 4, then 5 s (a job that needs this worker waits at most that).
      attempts_without_a_job = end.had_job ? 0 : attempts_without_a_job + 1;
      const bool repeated =
          !end.had_job && !refused_before.empty() && refused_before == last_refusal;
      if (repeated && !told_quiet) {
        fmt::print(
            stderr,
            "client: resident worker: refused again for the same reason; retrying at most "
            "5 s apart without repeating it until a job takes this worker (SIGTERM stops it)\n");
      }
      told_quiet = repeated;
      const double pause = attempts_without_a_job <= 1   ? 1.0
                           : attempts_without_a_job == 2 ? 2.0
                           : attempts_without_a_job == 3 ? 4.0
                                                         : 5.0;
      if (const int sig = pause_unless_signalled(pause); sig != 0) {
        fmt::print("client: resident worker stopped by a signal after {} job(s)\n", jobs);
        return 0;
      }
    }
  });
}

}  // namespace psgd
