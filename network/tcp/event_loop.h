#pragma once
// The event loop of init_server and of a client: io_context::run(), optionally with busy polling.
//
// A process waiting for a frame sleeps in epoll_wait; when the frame arrives the kernel wakes it.
// On a virtual machine whose idle vCPU has halted, that wake-up costs tens of microseconds (the
// hypervisor must resume the vCPU), twice per round trip of the parameter server: measured
// 0.08 ms of a 1.4 ms MLP iteration with one worker (bench/README.md, "Busy polling"). With a
// poll window, the loop keeps polling the sockets without sleeping (epoll_wait with a zero
// timeout, asio's poll(), and sched_yield between polls, so that any other runnable thread on
// its core goes first) until `window` has passed since the last handler ran, and only then
// blocks. That spends a core while waiting, which is free only on a machine with a core for
// every busy thread and nothing else running; on a loaded machine it slowed runs, so the job's
// --busy_poll_us (experiments/job_spec.h) is 0 unless asked for. The loop asks `window`
// for the current window each time round, so that its owner can set it once the job is known
// and turn polling off while a thread of its own computes (the server's evaluation).
//
// Handlers run exactly as with run(): same thread, same order; results do not depend on polling.
#include <asio/io_context.hpp>
#include <chrono>
#include <functional>

namespace psgd::net {

using PollWindow = std::function<std::chrono::microseconds()>;

// Runs `io` until it is stopped or out of work, polling while window() > 0 and blocking as
// io.run() does otherwise. Exceptions thrown by handlers propagate, as from io.run(); the loop
// can be entered again.
void run_event_loop(asio::io_context& io, const PollWindow& window);

}  // namespace psgd::net
