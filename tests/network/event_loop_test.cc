// net::run_event_loop: with a poll window it runs handlers exactly as io_context::run() does (the
// same order, timers, work posted from other threads, exceptions), returns when the context is
// stopped or out of work, and polls only while the window says so.
#include "network/tcp/event_loop.h"

#include <gtest/gtest.h>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace psgd::net {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

PollWindow fixed(microseconds window) {
  return [window] { return window; };
}

class EventLoop : public ::testing::TestWithParam<int> {
 protected:
  PollWindow window() const { return fixed(microseconds(GetParam())); }
};

TEST_P(EventLoop, RunsHandlersInOrderAndReturnsWhenOutOfWork) {
  asio::io_context io;
  std::vector<int> order;
  for (int i = 0; i < 5; ++i)
    asio::post(io, [&, i] {
      order.push_back(i);
      if (i == 2) asio::post(io, [&] { order.push_back(9); });  // posted from a handler
    });
  run_event_loop(io, window());
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 9}));
  EXPECT_TRUE(io.stopped());
}

TEST_P(EventLoop, RunsTimersAndWorkPostedFromAnotherThread) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);  // released by whichever event runs second
  int fired = 0;                           // touched on the loop's thread only
  asio::steady_timer timer(io, milliseconds(20));
  timer.async_wait([&](std::error_code ec) {
    EXPECT_FALSE(ec);
    if (++fired == 2) guard.reset();
  });
  std::thread other([&] {
    std::this_thread::sleep_for(milliseconds(5));
    asio::post(io, [&] {
      if (++fired == 2) guard.reset();
    });
  });
  run_event_loop(io, window());
  other.join();
  EXPECT_EQ(fired, 2);
}

TEST_P(EventLoop, ReturnsWhenStoppedFromAnotherThread) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);  // never released: only stop() ends the loop
  std::thread other([&] {
    std::this_thread::sleep_for(milliseconds(10));
    io.stop();
  });
  run_event_loop(io, window());
  other.join();
  EXPECT_TRUE(io.stopped());
}

TEST_P(EventLoop, AHandlersExceptionPropagatesAndTheLoopCanBeEnteredAgain) {
  asio::io_context io;
  int after = 0;
  asio::post(io, [] { throw std::runtime_error("boom"); });
  asio::post(io, [&] { ++after; });
  EXPECT_THROW(run_event_loop(io, window()), std::runtime_error);
  run_event_loop(io, window());
  EXPECT_EQ(after, 1);
}

INSTANTIATE_TEST_SUITE_P(Window, EventLoop, ::testing::Values(0, 200, 5000),
                         [](const auto& info) { return "us" + std::to_string(info.param); });

// The window is asked for every time round: an owner that turns polling off (the server while it
// evaluates) gets a loop that blocks from then on, and one that turns it on gets polling.
TEST(EventLoopWindow, IsAskedForAgainAndAgain) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::atomic<int> asked{0};
  std::thread other([&] {
    // Polling with a long window asks for it many times while idle; then stop.
    while (asked < 100)
      std::this_thread::sleep_for(milliseconds(1));
    io.stop();
  });
  run_event_loop(io, [&] {
    ++asked;
    return microseconds(1'000'000);
  });
  other.join();
  EXPECT_GE(asked, 100);

  // Window 0: blocks in run_one() until a handler, so it is asked once per handler, not spun.
  asio::io_context idle;
  auto idle_guard = asio::make_work_guard(idle);
  std::atomic<int> asked_idle{0};
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(50));
    asio::post(idle, [&] { idle.stop(); });
  });
  run_event_loop(idle, [&] {
    ++asked_idle;
    return microseconds(0);
  });
  stopper.join();
  EXPECT_LE(asked_idle, 3);
}

}  // namespace
}  // namespace psgd::net
