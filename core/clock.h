#pragma once
// Time as the algorithms see it. Roles never read the system clock directly: they are handed a
// Clock, which is the steady clock in a real run and the simulator's virtual clock in a simulated
// one, so the same role code measures phases in both.
#include <chrono>
#include <ctime>

namespace psgd {

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since an arbitrary fixed origin; monotonic.
  virtual double now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  SteadyClock() : origin_(std::chrono::steady_clock::now()) {}
  double now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin_).count();
  }

 private:
  std::chrono::steady_clock::time_point origin_;
};

// CPU time of this process (all its threads), in seconds: how long a piece of work kept the
// process busy, without the time it waited for a core that other processes were using.
class ProcessCpuClock final : public Clock {
 public:
  double now() const override {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
};

// Measures one phase: `Stopwatch sw(clock); ...; total += sw.seconds();`
class Stopwatch {
 public:
  explicit Stopwatch(const Clock& clock) : clock_(clock), start_(clock.now()) {}
  double seconds() const { return clock_.now() - start_; }
  void restart() { start_ = clock_.now(); }

 private:
  const Clock& clock_;
  double start_;
};

}  // namespace psgd
