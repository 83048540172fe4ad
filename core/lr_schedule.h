#pragma once
// Learning-rate schedules: the rate an optimiser step uses, as a pure function of the iteration.
//
// Every role that applies updates asks the same function for the same iteration (the server for
// ssgd, asgd and ssp; each worker for local_sgd, allreduce and broadcast), and the recorder asks it
// for metrics.csv's learn_rate column, so the rate in effect is one formula everywhere:
//
//   rate(i) = base · s(k) · w(i),   k = floor(i / I) the epoch of iteration i (I iterations each)
//
//   base  --learn_rate, times node_count with --lr_scaling linear (Goyal et al. 2017, "Accurate,
//         large minibatch SGD": a global batch n times larger takes an n times larger step)
//   s(k)  --lr_schedule: constant 1; step:E:GAMMA GAMMA^floor(k / E) (torch.optim's StepLR stepped
//         once per epoch); step:E1,E2,...:GAMMA GAMMA^(number of Ej <= k) (MultiStepLR); cosine
//         (1 + cos(pi · k / K)) / 2 over the job's K epochs (CosineAnnealingLR, T_max = K,
//         eta_min = 0, stepped per epoch)
//   w(i)  --lr_warmup_epochs W: a linear ramp over the first round(W · I) iterations,
//         w(i) = r + (1 - r) · min(1, (i + 1) / round(W · I)), from r = 1/node_count with linear
//         scaling (Goyal et al.'s gradual warm-up, from the single-worker rate to n times it) or
//         r = 0 otherwise; 1 without warm-up.
//
// Iterations and epochs are the strategy's (psgd/factory.h make_schedule): asgd and ssp count one
// iteration per server update, so their I is node_count times ssgd's and an epoch is still one
// pass over the data.
#include <cstdint>
#include <string>
#include <vector>

namespace psgd {

// The schedule flags of a job (core/fields.h).
struct LrScheduleOptions {
  std::string lr_schedule = "constant";  // constant | step:E:GAMMA | step:E1,E2,...:GAMMA | cosine
  double lr_warmup_epochs = 0;           // linear warm-up over this many epochs (0: none)
  std::string lr_scaling = "none";       // none | linear (× node_count, Goyal et al.)

  // Throws ConfigError naming the flag (an unknown schedule, a step that is not positive, ...).
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("lr_schedule", self.lr_schedule,
          "Learning-rate schedule over epochs, applied wherever the optimiser runs: constant | "
          "step:E:GAMMA (multiply by GAMMA every E epochs) | step:E1,E2,...:GAMMA (at those "
          "epochs) | cosine (half a cosine from --learn_rate to 0 over --epochs). The rate in "
          "effect is metrics.csv's learn_rate column");
    visit("lr_warmup_epochs", self.lr_warmup_epochs,
          "Ramp the rate up linearly over this many epochs (fractions allowed), from 0, or from "
          "--learn_rate with --lr_scaling linear (0: no warm-up)");
    visit("lr_scaling", self.lr_scaling,
          "none | linear: multiply --learn_rate by --node_count (Goyal et al. 2017's linear "
          "scaling rule for a node_count times larger global batch; they pair it with "
          "--lr_warmup_epochs 5)");
  }
};

class LrSchedule {
 public:
  // A constant rate (tests, and optimisers built without a job).
  LrSchedule(double rate = 0.05) : base_(rate) {}
  // The job's schedule. Throws ConfigError as LrScheduleOptions::validate() does.
  LrSchedule(const LrScheduleOptions& options, double learn_rate, int node_count,
             std::int64_t iterations_per_epoch, int epochs);

  // The rate of the step of iteration `iteration` (0-based).
  double rate(std::int64_t iteration) const;
  // --learn_rate after --lr_scaling: the rate before the warm-up and schedule factors.
  double base() const { return base_; }
  // "constant 0.05", "step:2:0.1 from 0.2, warm-up 390 iterations from 0.05", ...
  std::string describe() const;

 private:
  enum class Kind { kConstant, kStep, kCosine };
  Kind kind_ = Kind::kConstant;
  double base_ = 0.05;
  double start_ = 0;  // the warm-up's first factor r
  std::int64_t warmup_iterations_ = 0;
  std::int64_t iterations_per_epoch_ = 1;
  int epochs_ = 1;
  std::int64_t step_every_ = 0;           // step:E:GAMMA
  std::vector<std::int64_t> milestones_;  // step:E1,E2,...:GAMMA
  double gamma_ = 1;
  std::string spelling_ = "constant";
};

}  // namespace psgd
