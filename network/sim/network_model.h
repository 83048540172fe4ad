#pragma once
// NetworkModel: when does a message sent in the simulated cluster arrive?
//
// The cluster is a star: every worker has one full-duplex link to a switch, the server one
// full-duplex NIC. Every node has an egress port (what it sends) and an ingress port (what it
// receives); each port transmits one message at a time, first come first served. A message of
// S bytes from a to b occupies a's egress and b's ingress together for S * 8 / min(bw(a), bw(b))
// seconds, starting when both are free:
//
//   start    = max(depart, egress_free[a], ingress_free[b])
//   finish   = start + S * 8 / min(bw(a), bw(b))          (both ports busy until then)
//   delivery = finish + latency + jitter
//
// So the server's NIC is the shared bottleneck in both directions: n gradients arriving together
// queue on its ingress (uplink), and a broadcast of one message to n workers is n transmissions on
// its egress (downlink). Jitter is uniform in [0, jitter) from a seeded generator; deliveries on
// one (a, b) pair never overtake each other (TCP keeps order), so jitter only delays.
//
// Calls must come in non-decreasing `depart` order (the simulator calls send() from departure
// events, which run in time order). Sizes are the real encoded frame sizes, so codecs that shrink
// messages show their benefit.
//
// Threading: one thread.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace psgd::sim {

inline constexpr int kServerNode = -1;  // same value as psgd::kServer

struct NetworkOptions {
  double bandwidth_bps = 1e9;       // every worker's link
  double server_bandwidth_bps = 0;  // the server's NIC; 0: same as bandwidth_bps
  double latency_s = 100e-6;        // one way, per message
  double jitter_s = 0;              // extra one-way delay, uniform in [0, jitter_s)
  std::uint64_t seed = 1;           // for the jitter
};

struct Transmission {
  double start = 0;     // the message starts going onto the wire
  double finish = 0;    // its last bit has left (both ports free again)
  double delivery = 0;  // the receiver has it
};

class NetworkModel {
 public:
  NetworkModel(int workers, NetworkOptions options);

  // A message of `bytes` from node `from` to node `to` (kServerNode or a worker index) leaves
  // at `depart`.
  Transmission send(int from, int to, double depart, std::uint64_t bytes);

  const NetworkOptions& options() const { return options_; }

 private:
  std::size_t port(int node) const;
  double bandwidth(int node) const;

  NetworkOptions options_;
  int workers_;
  std::vector<double> egress_free_;  // index 0: the server, w + 1: worker w
  std::vector<double> ingress_free_;
  std::map<std::pair<int, int>, double> last_delivery_;
  Rng rng_;
};

}  // namespace psgd::sim
