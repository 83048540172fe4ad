#pragma once
// The client's compute thread: where a worker role's detached computation runs
// (psgd/strategy.h, WorkerRole::compute_detached), so that the event thread keeps delivering ring
// hops and answering heartbeats while the model computes. PyTorch DDP's communication thread,
// turned around: here the event loop is the communication thread and the computation moves.
//
// One thread, started by the first task and fed one task at a time; it sleeps on a condition
// variable between tasks (no busy-waiting). run() and busy() are called on the io_context's thread
// only; each task's `done` runs there too, with the exception the task threw, if any, so the
// event thread reports it as any other error. While a task runs the io_context holds a work
// guard, so its run() does not return under a computation. join() (and the destructor) waits for
// the task in hand (a torch step cannot be interrupted; a piece of backward is short, and a
// straggler's pause taken through sleep() ends at stop()) and ends the thread; a task's `done`
// posted after the io_context stopped is destroyed unrun.
#include <asio.hpp>

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace psgd {

class ComputeThread {
 public:
  explicit ComputeThread(asio::io_context& io) : io_(io) {}
  ~ComputeThread() { join(); }
  ComputeThread(const ComputeThread&) = delete;
  ComputeThread& operator=(const ComputeThread&) = delete;

  // Runs `work` on the compute thread, then `done(error)` on the io_context's thread (`error`:
  // what `work` threw; null when it returned). Throws psgd::Error while a task is in hand or
  // after join().
  void run(std::function<void()> work, std::function<void(std::exception_ptr)> done);
  // A task is in hand (its `done` has not run yet).
  bool busy() const { return busy_; }
  // From the task: sleeps `seconds` (a straggler's pause, --delay or --slowdown), or less once
  // stop() was called. Any thread; without stop() it is a plain sleep.
  void sleep(double seconds);
  // The run is over (the client gives up, leaves or finishes): a sleep in hand ends at once, the
  // task in hand runs to its end, and no task starts any more. Does not wait; any thread.
  void stop();
  // stop(), then waits for the task in hand, if any, and ends the thread. Safe to call more than
  // once.
  void join();

 private:
  void loop();

  asio::io_context& io_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> task_;       // guarded by mutex_; empty when there is none
  bool stop_ = false;                // guarded by mutex_
  std::condition_variable stopped_;  // sleep() waits on it
  // The io_context's thread only:
  bool busy_ = false;
  bool joined_ = false;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
};

}  // namespace psgd
