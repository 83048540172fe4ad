#pragma once
// NodeClock: the Clock a simulated node's roles read (core/clock.h).
//
// Between events a node's clock stands still at the virtual time of its last activity. The
// simulator starts it at an event's time with begin(t), calls the role, then end() freezes it; the
// time that passed inside the call is what the node spent, and its messages leave at now().
// Inside a call time moves in two ways, so that a role's Stopwatch measures modelled phases:
//   - advance(s): modelled time (a fixed compute step, a straggler's extra delay);
//   - when measuring, the CPU time this thread spends inside the call, times `cpu_scale` (a
//     straggler factor), read from CLOCK_THREAD_CPUTIME_ID so that other processes on the
//     machine do not stretch it. Torch must then run single-threaded (the simulator sets it).
// A clock that does not measure moves only by advance(): runs are then exactly repeatable.
//
// Threading: one thread.
#include <time.h>

#include "core/clock.h"

namespace psgd::sim {

inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

class NodeClock final : public Clock {
 public:
  explicit NodeClock(bool measure_cpu = false, double cpu_scale = 1.0)
      : measure_(measure_cpu), scale_(cpu_scale) {}

  double now() const override {
    double t = base_ + added_;
    if (running_ && measure_) t += (thread_cpu_seconds() - cpu0_) * scale_;
    return t;
  }
  void begin(double t) {
    base_ = t;
    added_ = 0;
    running_ = true;
    if (measure_) cpu0_ = thread_cpu_seconds();
  }
  void advance(double seconds) { added_ += seconds; }
  void end() {
    base_ = now();
    added_ = 0;
    running_ = false;
  }
  bool measures_cpu() const { return measure_; }

 private:
  bool measure_;
  double scale_;
  bool running_ = false;
  double base_ = 0, added_ = 0, cpu0_ = 0;
};

}  // namespace psgd::sim
