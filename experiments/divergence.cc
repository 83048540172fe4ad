#include "experiments/divergence.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <vector>

namespace psgd {

void DivergenceWatch::round(int epoch, std::int64_t iteration, double train_loss) {
  if (first_) return;
  if (std::isfinite(train_loss)) {
    last_finite_ = train_loss;
    last_finite_iteration_ = iteration;
    return;
  }
  first_ = Divergence{.epoch = epoch,
                      .iteration = iteration,
                      .what = "training loss",
                      .value = train_loss,
                      .last_finite = last_finite_,
                      .last_finite_iteration = last_finite_iteration_};
}

void DivergenceWatch::evaluated(int epoch, std::int64_t iteration, const std::string& what,
                                double loss) {
  if (first_ || std::isfinite(loss)) return;
  first_ = Divergence{.epoch = epoch,
                      .iteration = iteration,
                      .what = what,
                      .value = loss,
                      .last_finite = last_finite_,
                      .last_finite_iteration = last_finite_iteration_};
}

namespace {

// "nan", "inf" or "-inf" (fmt would print "-nan" for a NaN with its sign bit set).
std::string word(double v) {
  return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

std::string where(const Divergence& d, const JobSpec& spec) {
  if (d.epoch == 0) return "of the initial model";
  const bool evaluation = d.what != "training loss";
  return fmt::format("{} iteration {} (epoch {} of {})", evaluation ? "after" : "at", d.iteration,
                     d.epoch, spec.epochs);
}

std::string last_finite(const Divergence& d) {
  if (!d.last_finite) return "no finite training loss before it";
  return fmt::format("the last finite training loss was {:.4g}, at iteration {}", *d.last_finite,
                     d.last_finite_iteration);
}

}  // namespace

std::string divergence_status(const Divergence& d, const JobSpec& spec) {
  return fmt::format("diverged: {} {} {}; {}", d.what, word(d.value), where(d, spec),
                     last_finite(d));
}

std::string divergence_line(const Divergence& d, const JobSpec& spec, bool stopping) {
  std::vector<std::string> tries{fmt::format("a lower --learn_rate (now {:g})", spec.learn_rate)};
  if (spec.normalize == "none") {
    tries.push_back("--normalize zscore (the features are used as read, not normalised)");
  }
  if (spec.momentum > 0)
    tries.push_back(fmt::format("a lower --momentum (now {:g})", spec.momentum));
  if (spec.codec != "plain") {
    tries.push_back(
        fmt::format("gentler --codec {} settings, or --codec plain to rule it out", spec.codec));
  }
  std::string advice;
  for (std::size_t i = 0; i < tries.size(); ++i)
    advice += (i == 0 ? "" : i + 1 == tries.size() ? " or " : ", ") + tries[i];
  return fmt::format(
      "training diverged: the {} was {} {}, and {}; {}. Try {}{}", d.what, word(d.value),
      where(d, spec), last_finite(d),
      stopping ? "the run stops here (summary.json status \"diverged\", metrics.csv keeps the "
                 "epochs recorded so far)"
               : "carrying on as --on_divergence continue asks",
      advice, stopping ? " (--on_divergence continue trains on regardless)" : "");
}

nlohmann::json divergence_json(const std::optional<Divergence>& d) {
  if (!d) return nullptr;
  return {{"epoch", d->epoch},
          {"iteration", d->iteration},
          {"what", d->what},
          {"value", word(d->value)},  // JSON has no NaN or infinity
          {"last_finite_train_loss", d->last_finite ? nlohmann::json(*d->last_finite) : nullptr},
          {"last_finite_iteration",
           d->last_finite ? nlohmann::json(d->last_finite_iteration) : nullptr}};
}

nlohmann::json announce_divergence(const Divergence& d, const JobSpec& spec, const char* clock_key,
                                   double now) {
  fmt::print(stderr, "init_server: {}\n", divergence_line(d, spec, spec.on_divergence == "stop"));
  std::fflush(stderr);
  return {{"event", "diverged"}, {"iteration", d.iteration}, {clock_key, now}, {"what", d.what}};
}

}  // namespace psgd
