#pragma once
// How long to wait before the next attempt to reach a server: a capped exponential backoff with
// jitter (AWS's "equal jitter": each wait is half its step plus a random part of the other half).
// The growth keeps a client gentle on a server that is gone or overloaded; the jitter keeps the
// workers that lost the same server from redialling it in lockstep. Socket-free; one thread.
#include <algorithm>
#include <cstdint>
#include <random>

namespace psgd::net {

class Backoff {
 public:
  // Steps double from `first_s` up to `cap_s`; `seed` 0 draws one from std::random_device.
  explicit Backoff(double first_s = 0.1, double cap_s = 2.0, std::uint64_t seed = 0)
      : first_(first_s), cap_(cap_s), step_(first_s), rng_(seed ? seed : std::random_device{}()) {}

  // The next wait in seconds, in [step / 2, step]; then the step doubles (at most to the cap).
  double next() {
    const double wait = step_ / 2 + std::uniform_real_distribution<double>(0, step_ / 2)(rng_);
    step_ = std::min(step_ * 2, cap_);
    return wait;
  }
  // Back to the first step (after an attempt got through).
  void reset() { step_ = first_; }

 private:
  double first_, cap_, step_;
  std::mt19937_64 rng_;
};

}  // namespace psgd::net
