#include "core/lr_schedule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace psgd {
namespace {

struct StepSpec {
  std::vector<std::int64_t> epochs;  // one: every E epochs; several: milestones
  double gamma = 1;
};

std::int64_t parse_epoch(const std::string& flag, std::string_view text) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1) {
    throw ConfigError(fmt::format(
        "--lr_schedule {}: '{}' is not a number of epochs (a whole number >= 1)", flag, text));
  }
  return v;
}

StepSpec parse_step(const std::string& spec) {
  // step:E:GAMMA or step:E1,E2,...:GAMMA
  const std::string rest = spec.substr(5);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    throw ConfigError(
        fmt::format("--lr_schedule {}: write step:EPOCHS:GAMMA (every EPOCHS epochs) or "
                    "step:E1,E2,...:GAMMA (at those epochs), e.g. step:30:0.1",
                    spec));
  }
  StepSpec s;
  const std::string_view epochs(rest.data(), colon);
  std::size_t start = 0;
  while (start <= epochs.size()) {
    const auto comma = epochs.find(',', start);
    s.epochs.push_back(parse_epoch(spec, epochs.substr(start, comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (!std::is_sorted(s.epochs.begin(), s.epochs.end()) ||
      std::adjacent_find(s.epochs.begin(), s.epochs.end()) != s.epochs.end()) {
    throw ConfigError(
        fmt::format("--lr_schedule {}: the milestone epochs must be increasing", spec));
  }
  const std::string gamma = rest.substr(colon + 1);
  char* end = nullptr;
  s.gamma = std::strtod(gamma.c_str(), &end);
  if (end != gamma.c_str() + gamma.size() || !(s.gamma > 0) || !std::isfinite(s.gamma)) {
    throw ConfigError(fmt::format(
        "--lr_schedule {}: GAMMA '{}' must be a positive number (0.1 divides the rate by 10)", spec,
        gamma));
  }
  return s;
}

}  // namespace

void LrScheduleOptions::validate() const {
  if (lr_schedule.starts_with("step:")) {
    parse_step(lr_schedule);
  } else if (lr_schedule != "constant" && lr_schedule != "cosine") {
    throw ConfigError(
        fmt::format("--lr_schedule {}: unknown schedule; choose constant, step:EPOCHS:GAMMA, "
                    "step:E1,E2,...:GAMMA or cosine",
                    lr_schedule));
  }
  if (!(lr_warmup_epochs >= 0) || !std::isfinite(lr_warmup_epochs)) {
    throw ConfigError(
        fmt::format("--lr_warmup_epochs {}: must be a number of epochs >= 0", lr_warmup_epochs));
  }
  if (lr_scaling != "none" && lr_scaling != "linear") {
    throw ConfigError(
        fmt::format("--lr_scaling {}: unknown value; choose none or linear", lr_scaling));
  }
}

LrSchedule::LrSchedule(const LrScheduleOptions& options, double learn_rate, int node_count,
                       std::int64_t iterations_per_epoch, int epochs)
    : base_(learn_rate),
      iterations_per_epoch_(std::max<std::int64_t>(1, iterations_per_epoch)),
      epochs_(std::max(1, epochs)),
      spelling_(options.lr_schedule) {
  options.validate();
  const bool linear = options.lr_scaling == "linear";
  if (linear) base_ *= std::max(1, node_count);
  if (options.lr_schedule == "cosine") {
    kind_ = Kind::kCosine;
  } else if (options.lr_schedule.starts_with("step:")) {
    kind_ = Kind::kStep;
    StepSpec s = parse_step(options.lr_schedule);
    gamma_ = s.gamma;
    if (s.epochs.size() == 1) {
      step_every_ = s.epochs.front();
    } else {
      milestones_ = std::move(s.epochs);
    }
  }
  warmup_iterations_ = static_cast<std::int64_t>(
      std::llround(options.lr_warmup_epochs * static_cast<double>(iterations_per_epoch_)));
  if (options.lr_warmup_epochs > 0)
    warmup_iterations_ = std::max<std::int64_t>(1, warmup_iterations_);
  start_ = linear ? 1.0 / std::max(1, node_count) : 0.0;
}

double LrSchedule::rate(std::int64_t iteration) const {
  const std::int64_t i = std::max<std::int64_t>(0, iteration);
  const std::int64_t k = i / iterations_per_epoch_;
  double factor = 1;
  switch (kind_) {
    case Kind::kConstant:
      break;
    case Kind::kStep: {
      std::int64_t drops = 0;
      if (step_every_ > 0) {
        drops = k / step_every_;
      } else {
        drops = std::upper_bound(milestones_.begin(), milestones_.end(), k) - milestones_.begin();
      }
      factor = std::pow(gamma_, static_cast<double>(drops));
      break;
    }
    case Kind::kCosine:
      factor = 0.5 * (1.0 + std::cos(std::numbers::pi * static_cast<double>(k) /
                                     static_cast<double>(epochs_)));
      break;
  }
  if (i < warmup_iterations_) {
    const double t = static_cast<double>(i + 1) / static_cast<double>(warmup_iterations_);
    factor *= start_ + (1.0 - start_) * t;
  }
  return base_ * factor;
}

std::string LrSchedule::describe() const {
  std::string text = fmt::format("{} from {:g}", spelling_, base_);
  if (warmup_iterations_ > 0) {
    text +=
        fmt::format(", warm-up over {} iterations from {:g}", warmup_iterations_, base_ * start_);
  }
  return text;
}

}  // namespace psgd
