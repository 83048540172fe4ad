#pragma once
// Injected slowness for straggler experiments, as a Learner decorator.
//
// StragglerLearner wraps the worker's Learner: after each compute_gradient() it adds
// (slowdown - 1) x the measured compute time, plus a delay drawn from a seeded distribution, and
// passes that time to an injected `pause` function. A real client pauses by sleeping; a simulator
// can advance its virtual clock instead, so the same slowness model runs in both. The decorator
// measures with the Clocks it is given and never reads the system clock itself.
//
// What it models: a remote machine whose processor is F times slower. Such a machine takes F
// times as long for its own work and leaves everyone else's processors alone, hence a pause (a
// sleep) rather than extra computation, which on a shared host would steal a core from the other
// workers. With a `work` clock (a real client passes its process CPU time), the measured compute
// time is min(wall, work): when several workers share the host's cores, the time a step waited
// for a core is the host's artefact and is not stretched; with several torch threads the CPU time
// exceeds the wall time and the wall time counts.
//
// Sharing the host inflates even the CPU time of a step (caches and memory bandwidth shared with
// the other workers, a hypervisor's neighbours): measured on a 2-core VM, the same MLP batch
// took 1.5x the CPU time while the fast workers computed beside it (asgd, local_sgd) than while
// they waited (ssgd), so a strategy that keeps the fast workers busy made the slow worker slower
// still. The stretch is therefore F - 1 times the step's samples times the lowest per-sample
// compute time of the last kWindow steps (this one included): the host's uncontended speed,
// which contention only ever raises. A smaller last batch is stretched in proportion.
//
// Delay specifications (the job's --delay): "none", "fixed:S" (S seconds every iteration),
// "exp:M" (exponentially distributed with mean M seconds), "uniform:A:B" (uniform in [A, B]).
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "core/clock.h"
#include "core/learner.h"
#include "core/rng.h"

namespace psgd {

// --delay: a pause every worker takes after each batch, drawn from DelayModel with the worker's
// own seed stream (core/seeds.h worker_delay). A real worker sleeps; the simulator advances the
// worker's virtual clock by the same amount.
struct DelayOptions {
  std::string delay = "none";

  void validate() const;  // throws ConfigError naming --delay

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("delay", self.delay,
          "Extra time each worker pauses after every batch, seeded per worker: none | "
          "fixed:SECONDS | exp:MEAN_SECONDS | uniform:LOW:HIGH");
  }
};

struct DelayModel {
  enum class Kind { kNone, kFixed, kExponential, kUniform };
  Kind kind = Kind::kNone;
  double a = 0;  // fixed: seconds; exp: mean; uniform: low
  double b = 0;  // uniform: high

  // Throws ConfigError naming --delay for a malformed specification.
  static DelayModel parse(const std::string& spec);
  // One delay in seconds; portable for a seed (psgd::Rng, no std:: distributions).
  double sample(Rng& rng) const;
  bool none() const { return kind == Kind::kNone; }
};

struct StragglerOptions {
  double slowdown = 1.0;  // compute time is stretched to slowdown x measured (>= 1)
  DelayModel delay;
  std::uint64_t seed = 0;  // seeds the delay draws
};

class StragglerLearner final : public Learner {
 public:
  StragglerLearner(Learner& inner, StragglerOptions options, const Clock& clock,
                   std::function<void(double seconds)> pause, const Clock* work = nullptr);

  std::span<float> parameters() override { return inner_.parameters(); }
  std::span<const float> gradients() const override { return inner_.gradients(); }
  StepStats compute_gradient() override;
  EvalStats evaluate() override { return inner_.evaluate(); }
  std::span<float> buffers() override { return inner_.buffers(); }

  double injected_seconds() const { return injected_; }

  static constexpr std::size_t kWindow = 32;

 private:
  // The lowest per-sample compute time of the last kWindow steps that measured any, with `cost`.
  double lowest_cost(double cost);

  Learner& inner_;
  StragglerOptions options_;
  const Clock& clock_;
  const Clock* work_;
  std::function<void(double)> pause_;
  Rng rng_;
  double injected_ = 0;
  std::array<double, kWindow> costs_{};  // per-sample seconds, a ring of the last steps
  std::size_t steps_ = 0;
};

}  // namespace psgd
