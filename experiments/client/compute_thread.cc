#include "experiments/client/compute_thread.h"

#include <chrono>

#include "core/error.h"

namespace psgd {

void ComputeThread::run(std::function<void()> work, std::function<void(std::exception_ptr)> done) {
  PSGD_CHECK(!busy_, "a second computation while one runs");
  PSGD_CHECK(!joined_, "a computation after the compute thread ended");
  {
    std::lock_guard lock(mutex_);
    PSGD_CHECK(!stop_, "a computation after the run stopped");
  }
  busy_ = true;
  guard_.emplace(asio::make_work_guard(io_));
  auto task = [this, work = std::move(work), done = std::move(done)]() mutable {
    std::exception_ptr error;
    try {
      work();
    } catch (...) {
      error = std::current_exception();
    }
    asio::post(io_, [this, error, done = std::move(done)] {
      busy_ = false;
      guard_.reset();
      done(error);
    });
  };
  {
    std::lock_guard lock(mutex_);
    task_ = std::move(task);
  }
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { loop(); });
  } else {
    wake_.notify_one();
  }
}

void ComputeThread::loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || task_; });
      if (!task_) return;  // stopped with nothing in hand
      task = std::move(task_);
      task_ = nullptr;
    }
    task();
  }
}

void ComputeThread::sleep(double seconds) {
  std::unique_lock lock(mutex_);
  stopped_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stop_; });
}

void ComputeThread::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  stopped_.notify_all();
}

void ComputeThread::join() {
  if (joined_) return;
  joined_ = true;
  stop();
  if (thread_.joinable()) thread_.join();
  guard_.reset();
}

}  // namespace psgd
