#include "experiments/sim_options.h"

#include <fmt/format.h>

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/fields_json.h"
#include "network/sim/units.h"

namespace psgd {
namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, sep)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

// "12.5" (seconds) or a duration with a unit ("12.5s", "5ms").
double seconds(const std::string& text) {
  std::size_t used = 0;
  try {
    const double v = std::stod(text, &used);
    if (used == text.size()) {
      if (!std::isfinite(v) || v < 0) throw ConfigError(fmt::format("'{}': negative time", text));
      return v;
    }
  } catch (const std::logic_error&) {
  }
  return sim::parse_duration_s(text);
}

int worker_index(const std::string& text, int node_count, const char* flag) {
  std::size_t used = 0;
  int w = -1;
  try {
    w = std::stoi(text, &used);
  } catch (const std::logic_error&) {
  }
  if (used != text.size() || w < 0 || w >= node_count) {
    throw ConfigError(
        fmt::format("{}: '{}' is not a worker index (0 to {})", flag, text, node_count - 1));
  }
  return w;
}

template <class F>
auto flag(const char* name, const std::string& value, F&& parse) {
  try {
    return parse();
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("--{} {}: {}", name, value, e.what()));
  }
}

}  // namespace

void SimOptions::validate() const {
  if (enabled) return;
  for (const std::string& name : changed_fields(*this)) {
    throw ConfigError(
        fmt::format("--{} needs --simulate (it describes the simulated network or "
                    "workers; a real run has real ones)",
                    name));
  }
}

SimClusterOptions cluster_options(const SimOptions& sim, int node_count, std::uint64_t seed) {
  SimClusterOptions o;
  o.node_count = node_count;
  o.seed = seed;
  o.network.seed = seed;
  o.compute = flag("sim_compute", sim.compute, [&] {
    if (sim.compute == "measured") return ComputeModel{.measured = true};
    if (sim.compute.rfind("fixed:", 0) == 0) {
      return ComputeModel{.measured = false, .fixed_s = seconds(sim.compute.substr(6))};
    }
    throw ConfigError("choose measured or fixed:SECONDS");
  });
  o.network.bandwidth_bps = flag("net_bandwidth", sim.net_bandwidth,
                                 [&] { return sim::parse_bandwidth_bps(sim.net_bandwidth); });
  o.network.server_bandwidth_bps = sim.server_bandwidth.empty()
                                       ? o.network.bandwidth_bps
                                       : flag("server_bandwidth", sim.server_bandwidth, [&] {
                                           return sim::parse_bandwidth_bps(sim.server_bandwidth);
                                         });
  o.network.worker_bandwidth_bps.assign(static_cast<std::size_t>(node_count),
                                        o.network.bandwidth_bps);
  for (const std::string& item : split(sim.host_bandwidth, ',')) {
    flag("host_bandwidth", sim.host_bandwidth, [&] {
      const auto colon = item.find(':');
      if (colon == std::string::npos) throw ConfigError("write WORKER:RATE, e.g. 3:10Mbps");
      const int w = worker_index(item.substr(0, colon), node_count, "worker");
      o.network.worker_bandwidth_bps[static_cast<std::size_t>(w)] =
          sim::parse_bandwidth_bps(item.substr(colon + 1));
      return 0;
    });
  }
  if (sim.net_mtu != 0 && (sim.net_mtu < 576 || sim.net_mtu > 65535)) {
    throw ConfigError(fmt::format(
        "--net_mtu {}: give a link MTU of 576 to 65535 bytes (Ethernet: 1500), or 0 to count "
        "message bytes only",
        sim.net_mtu));
  }
  o.network.mtu = sim.net_mtu;
  if (!(sim.net_unfairness >= 0 && sim.net_unfairness < 1)) {
    throw ConfigError(
        fmt::format("--net_unfairness {}: give a number in [0, 1) (0: TCP flows share a link "
                    "equally)",
                    sim.net_unfairness));
  }
  o.network.unfairness = sim.net_unfairness;
  o.network.latency_s =
      flag("net_latency", sim.net_latency, [&] { return sim::parse_duration_s(sim.net_latency); });
  o.network.jitter_s =
      flag("net_jitter", sim.net_jitter, [&] { return sim::parse_duration_s(sim.net_jitter); });

  o.slowdown.assign(static_cast<std::size_t>(node_count), 1.0);
  for (const std::string& item : split(sim.stragglers, ',')) {
    flag("stragglers", sim.stragglers, [&] {
      const auto colon = item.find(":x");
      if (colon == std::string::npos) throw ConfigError("write WORKER:xFACTOR, e.g. 2:x4");
      const int w = worker_index(item.substr(0, colon), node_count, "worker");
      std::size_t used = 0;
      double f = 0;
      try {
        f = std::stod(item.substr(colon + 2), &used);
      } catch (const std::logic_error&) {
      }
      if (used == 0 || used != item.size() - colon - 2 || !(f > 0) || !std::isfinite(f)) {
        throw ConfigError(fmt::format("'{}': the factor must be a positive number", item));
      }
      o.slowdown[static_cast<std::size_t>(w)] = f;
      return 0;
    });
  }
  if (!sim.straggler_dist.empty()) {
    o.extra_delay_mean_s = flag("straggler_dist", sim.straggler_dist, [&] {
      if (sim.straggler_dist.rfind("exp:", 0) != 0) throw ConfigError("choose exp:MEAN");
      return seconds(sim.straggler_dist.substr(4));
    });
  }
  o.fail_at.assign(static_cast<std::size_t>(node_count), kNever);
  for (const std::string& item : split(sim.fail, ',')) {
    flag("fail", sim.fail, [&] {
      const auto at = item.find('@');
      if (at == std::string::npos) throw ConfigError("write WORKER@SECONDS, e.g. 3@12.5");
      const int w = worker_index(item.substr(0, at), node_count, "worker");
      o.fail_at[static_cast<std::size_t>(w)] = seconds(item.substr(at + 1));
      return 0;
    });
  }
  return o;
}

nlohmann::json sim_config_json(const SimOptions& sim, int node_count, std::uint64_t seed) {
  const SimClusterOptions o = cluster_options(sim, node_count, seed);
  nlohmann::json stragglers = nlohmann::json::object();
  for (std::size_t w = 0; w < o.slowdown.size(); ++w) {
    if (o.slowdown[w] != 1.0) stragglers[std::to_string(w)] = o.slowdown[w];
  }
  nlohmann::json failures = nlohmann::json::object();
  for (std::size_t w = 0; w < o.fail_at.size(); ++w) {
    if (o.fail_at[w] != kNever) failures[std::to_string(w)] = o.fail_at[w];
  }
  return {{"flags",
           {{"sim_compute", sim.compute},
            {"net_bandwidth", sim.net_bandwidth},
            {"net_latency", sim.net_latency},
            {"net_jitter", sim.net_jitter},
            {"server_bandwidth", sim.server_bandwidth},
            {"host_bandwidth", sim.host_bandwidth},
            {"net_mtu", sim.net_mtu},
            {"net_unfairness", sim.net_unfairness},
            {"stragglers", sim.stragglers},
            {"straggler_dist", sim.straggler_dist},
            {"fail", sim.fail}}},
          {"compute", o.compute.measured ? nlohmann::json("measured (thread CPU time)")
                                         : nlohmann::json({{"fixed_seconds", o.compute.fixed_s}})},
          {"bandwidth_bps", o.network.bandwidth_bps},
          {"server_bandwidth_bps", o.network.server_bandwidth_bps},
          {"worker_bandwidth_bps", o.network.worker_bandwidth_bps},
          {"mtu", o.network.mtu},
          {"tcp_unfairness", o.network.unfairness},
          {"latency_s", o.network.latency_s},
          {"jitter_s", o.network.jitter_s},
          {"straggler_factors", stragglers},
          {"straggler_extra_delay",
           o.extra_delay_mean_s > 0
               ? nlohmann::json({{"distribution", "exponential"}, {"mean_s", o.extra_delay_mean_s}})
               : nlohmann::json(nullptr)},
          {"failures_at_s", failures},
          {"seed", seed}};
}

}  // namespace psgd
