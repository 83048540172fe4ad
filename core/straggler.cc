#include "core/straggler.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "core/error.h"

namespace psgd {
namespace {

double parse_seconds(const std::string& spec, const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !(v >= 0) || !std::isfinite(v)) {
    throw ConfigError(
        fmt::format("--delay {}: \"{}\" is not a non-negative number of seconds", spec, text));
  }
  return v;
}

// Uniform double in [0, 1) from the top 53 bits.
double unit(Rng& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

void DelayOptions::validate() const {
  DelayModel::parse(delay);
}

DelayModel DelayModel::parse(const std::string& spec) {
  if (spec.empty() || spec == "none") return {};
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "fixed" && !rest.empty()) {
    return {.kind = Kind::kFixed, .a = parse_seconds(spec, rest)};
  }
  if (kind == "exp" && !rest.empty()) {
    return {.kind = Kind::kExponential, .a = parse_seconds(spec, rest)};
  }
  if (kind == "uniform") {
    const auto second = rest.find(':');
    if (second != std::string::npos) {
      DelayModel d{.kind = Kind::kUniform,
                   .a = parse_seconds(spec, rest.substr(0, second)),
                   .b = parse_seconds(spec, rest.substr(second + 1))};
      if (d.b < d.a) throw ConfigError(fmt::format("--delay {}: high is below low", spec));
      return d;
    }
  }
  throw ConfigError(fmt::format(
      "--delay {}: expected none, fixed:SECONDS, exp:MEAN_SECONDS or uniform:LOW:HIGH", spec));
}

double DelayModel::sample(Rng& rng) const {
  switch (kind) {
    case Kind::kNone:
      return 0;
    case Kind::kFixed:
      return a;
    case Kind::kExponential:
      return -a * std::log1p(-unit(rng));
    case Kind::kUniform:
      return a + (b - a) * unit(rng);
  }
  return 0;
}

StragglerLearner::StragglerLearner(Learner& inner, StragglerOptions options, const Clock& clock,
                                   std::function<void(double)> pause, const Clock* work)
    : inner_(inner),
      options_(options),
      clock_(clock),
      work_(work),
      pause_(std::move(pause)),
      rng_(options.seed) {
  PSGD_CHECK(options_.slowdown >= 1.0, "slowdown {} must be at least 1", options_.slowdown);
  PSGD_CHECK(static_cast<bool>(pause_), "a straggler learner needs a pause function");
}

double StragglerLearner::lowest_cost(double cost) {
  costs_[steps_ % kWindow] = cost;
  ++steps_;
  const auto filled = costs_.begin() + static_cast<std::ptrdiff_t>(std::min(steps_, kWindow));
  return *std::min_element(costs_.begin(), filled);
}

StepStats StragglerLearner::compute_gradient() {
  const double start = clock_.now();
  const double work_start = work_ ? work_->now() : 0.0;
  const StepStats stats = inner_.compute_gradient();
  double measured = clock_.now() - start;
  if (work_) measured = std::min(measured, work_->now() - work_start);
  double compute = measured;
  if (stats.samples > 0 && measured > 0) {
    const auto samples = static_cast<double>(stats.samples);
    compute = samples * lowest_cost(measured / samples);
  }
  const double extra = (options_.slowdown - 1.0) * compute + options_.delay.sample(rng_);
  if (extra > 0) {
    pause_(extra);
    injected_ += extra;
  }
  return stats;
}

}  // namespace psgd
