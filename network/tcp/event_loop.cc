#include "network/tcp/event_loop.h"

#include <thread>

namespace psgd::net {

void run_event_loop(asio::io_context& io, const PollWindow& window) {
  using Clock = std::chrono::steady_clock;
  auto last_event = Clock::now();
  while (true) {
    if (const auto spin = window(); spin.count() > 0) {
      // poll() runs every handler that is ready, the reactor's (a non-blocking epoll_wait)
      // included, and stops the context when it has run out of work, as run() would end.
      if (io.poll() > 0) {
        last_event = Clock::now();
        continue;
      }
      if (io.stopped()) return;
      if (Clock::now() - last_event < spin) {
        std::this_thread::yield();
        continue;
      }
    }
    // Nothing within the window: sleep until the next handler (a frame, a timer, a post).
    if (io.run_one() == 0) return;  // stopped or out of work
    last_event = Clock::now();
  }
}

}  // namespace psgd::net
