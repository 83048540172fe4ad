#include "core/model_average.h"

#include <cmath>

#include "core/error.h"
#include "core/state_io.h"

namespace psgd {

void ModelAverageOptions::validate() const {
  if (model_average != "auto") parse_model_average(model_average);
}

double parse_model_average(const std::string& text) {
  if (text == "off") return 0.0;
  const std::string prefix = "ema:";
  if (text.rfind(prefix, 0) == 0) {
    const std::string number = text.substr(prefix.size());
    std::size_t used = 0;
    double beta = -1;
    try {
      beta = std::stod(number, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == number.size() && used > 0 && beta > 0.0 && beta < 1.0) return beta;
  }
  throw ConfigError(fmt::format(
      "--model_average {}: expected off or ema:BETA with 0 < BETA < 1 (e.g. ema:0.99)", text));
}

ModelAverage::ModelAverage(double decay, std::size_t size) : decay_(decay), sum_(size, 0.0f) {
  PSGD_CHECK(decay > 0.0 && decay < 1.0, "model average decay {} outside (0, 1)", decay);
}

void ModelAverage::add(std::span<const float> params, std::int64_t updates) {
  PSGD_CHECK_EQ(params.size(), sum_.size(), "model average of another size");
  if (updates <= 0) return;
  // k equal iterates: sum <- beta^k sum + (1 - beta^k) p, since sum_{j<k} beta^j (1 - beta) =
  // 1 - beta^k.
  const double keep = std::pow(decay_, static_cast<double>(updates));
  const auto k = static_cast<float>(keep);
  const auto fresh = static_cast<float>(1.0 - keep);
  float* __restrict s = sum_.data();
  const float* __restrict p = params.data();
  for (std::size_t i = 0, n = sum_.size(); i < n; ++i)
    s[i] = k * s[i] + fresh * p[i];
  weight_ = keep * weight_ + (1.0 - keep);
  updates_ += updates;
}

std::vector<std::uint8_t> ModelAverage::state() const {
  std::vector<std::uint8_t> out;
  StateWriter w(out);
  w.put<double>(decay_);
  w.put<double>(weight_);
  w.put<std::int64_t>(updates_);
  w.put_floats(sum_);
  return out;
}

void ModelAverage::restore_state(std::span<const std::uint8_t> state) {
  StateReader r(state, "model average state");
  const auto decay = r.get<double>();
  const auto weight = r.get<double>();
  const auto updates = r.get<std::int64_t>();
  auto sum = r.get_floats(sum_.size());
  r.expect_end();
  if (decay != decay_) r.fail(fmt::format("decay {}, this run's is {}", decay, decay_).c_str());
  if (!(weight >= 0.0 && weight <= 1.0) || updates < 0) r.fail("a weight or count out of range");
  weight_ = weight;
  updates_ = updates;
  sum_ = std::move(sum);
}

bool ModelAverage::average(std::span<float> out) const {
  PSGD_CHECK_EQ(out.size(), sum_.size(), "model average of another size");
  if (updates_ == 0) return false;
  const auto scale = static_cast<float>(1.0 / weight_);
  for (std::size_t i = 0; i < sum_.size(); ++i)
    out[i] = sum_[i] * scale;
  return true;
}

}  // namespace psgd
