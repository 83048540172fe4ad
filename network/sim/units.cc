#include "network/sim/units.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <string>

#include "core/error.h"

namespace psgd::sim {
namespace {

// Splits "12.5ms" into 12.5 and "ms"; throws when there is no leading number.
std::pair<double, std::string> split(std::string_view text, const char* what) {
  const std::string s(text);
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(s, &used);
  } catch (const std::exception&) {
    throw ConfigError(fmt::format("'{}' is not a {}", s, what));
  }
  if (!std::isfinite(value) || value < 0) {
    throw ConfigError(fmt::format("'{}': a {} must be a non-negative number", s, what));
  }
  std::string unit = s.substr(used);
  for (char& c : unit)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return {value, unit};
}

}  // namespace

double parse_bandwidth_bps(std::string_view text) {
  auto [value, unit] = split(text, "bandwidth (e.g. 1Gbps, 100Mbps)");
  if (unit.size() >= 3 && unit.substr(unit.size() - 3) == "b/s") {
    unit = unit.substr(0, unit.size() - 3) + "bps";
  }
  double scale = 0;
  if (unit == "bps") scale = 1;
  if (unit == "kbps") scale = 1e3;
  if (unit == "mbps") scale = 1e6;
  if (unit == "gbps") scale = 1e9;
  if (scale == 0) {
    throw ConfigError(
        fmt::format("'{}': give a bandwidth with a unit: bps, Kbps, Mbps or Gbps", text));
  }
  if (value <= 0) throw ConfigError(fmt::format("'{}': bandwidth must be positive", text));
  return value * scale;
}

double parse_duration_s(std::string_view text) {
  auto [value, unit] = split(text, "duration (e.g. 100us, 2ms, 1.5s)");
  if (unit.empty() && value == 0) return 0;
  double scale = 0;
  if (unit == "s") scale = 1;
  if (unit == "ms") scale = 1e-3;
  if (unit == "us") scale = 1e-6;
  if (unit == "ns") scale = 1e-9;
  if (scale == 0) {
    throw ConfigError(fmt::format("'{}': give a duration with a unit: s, ms, us or ns", text));
  }
  return value * scale;
}

}  // namespace psgd::sim
