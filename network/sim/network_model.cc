#include "network/sim/network_model.h"

#include <algorithm>

#include "core/error.h"
#include "core/seeds.h"

namespace psgd::sim {

NetworkModel::NetworkModel(int workers, NetworkOptions options)
    : options_(options),
      workers_(workers),
      egress_free_(static_cast<std::size_t>(workers) + 1, 0.0),
      ingress_free_(static_cast<std::size_t>(workers) + 1, 0.0),
      rng_(seeds::of(options.seed, seeds::kSimJitter)) {
  if (options_.server_bandwidth_bps <= 0) options_.server_bandwidth_bps = options_.bandwidth_bps;
  PSGD_CHECK(workers >= 1 && options_.bandwidth_bps > 0 && options_.latency_s >= 0 &&
                 options_.jitter_s >= 0,
             "invalid network model");
}

std::size_t NetworkModel::port(int node) const {
  PSGD_CHECK(node >= kServerNode && node < workers_, "no node {} in a cluster of {} workers", node,
             workers_);
  return static_cast<std::size_t>(node + 1);
}

double NetworkModel::bandwidth(int node) const {
  return node == kServerNode ? options_.server_bandwidth_bps : options_.bandwidth_bps;
}

Transmission NetworkModel::send(int from, int to, double depart, std::uint64_t bytes) {
  const std::size_t a = port(from), b = port(to);
  Transmission t;
  t.start = std::max({depart, egress_free_[a], ingress_free_[b]});
  const double rate = std::min(bandwidth(from), bandwidth(to));
  t.finish = t.start + static_cast<double>(bytes) * 8.0 / rate;
  egress_free_[a] = ingress_free_[b] = t.finish;
  double delay = options_.latency_s;
  if (options_.jitter_s > 0) {
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1)
    delay += u * options_.jitter_s;
  }
  double& last = last_delivery_[{from, to}];
  t.delivery = std::max(t.finish + delay, last);
  last = t.delivery;
  return t;
}

}  // namespace psgd::sim
