#pragma once
// The flags of a simulated run (`init_server --simulate ...`), as typed, and what they mean for
// the SimCluster (experiments/sim_cluster.h). They are recorded in config.json under
// "simulation", beside the job: the job is the same whether it runs for real or simulated.
//
//   --sim_compute      measured | fixed:SECONDS   time of one worker compute step
//   --net_bandwidth    1Gbps                      every worker's link (bps, Kbps, Mbps, Gbps)
//   --net_latency      100us                      one-way latency per message (s, ms, us, ns)
//   --net_jitter       0                          extra one-way delay, uniform in [0, jitter)
//   --server_bandwidth (= --net_bandwidth)        the server's NIC, shared by all workers
//   --host_bandwidth   "3:10Mbps"                 worker 3's link (a host on a slower network)
//   --net_mtu          1500                       packet size: TCP/IP and Ethernet headers per
//                                                 MTU - 52 bytes of message (0: none)
//   --net_unfairness   0.5                        how unequally TCP flows share a link
//   --stragglers       "2:x4,5:x2"                worker 2 four times slower, worker 5 twice
//   --straggler_dist   exp:MEAN                   every step of every worker gets an extra delay
//                                                 drawn from an exponential of mean MEAN
//   --fail             "3@12.5"                   worker 3 fails at virtual time 12.5 s
// Times without a unit are seconds.
#include <nlohmann/json.hpp>

#include <string>

#include "experiments/sim_cluster.h"

namespace psgd {

struct SimOptions {
  bool enabled = false;
  std::string compute = "measured";
  std::string net_bandwidth = "1Gbps";
  std::string net_latency = "100us";
  std::string net_jitter = "0";
  std::string server_bandwidth;  // empty: same as net_bandwidth
  std::string host_bandwidth;    // WORKER:RATE,...
  int net_mtu = 1500;
  double net_unfairness = 0.5;
  std::string stragglers;
  std::string straggler_dist;
  std::string fail;

  // Refuses a simulation flag given without --simulate (ConfigError naming it); the values
  // themselves are checked by cluster_options().
  void validate() const;

  template <class Self, class Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("simulate", self.enabled,
          "Run the server and node_count workers in this process on a virtual clock with a "
          "network model instead of waiting for clients (the same job: data, placement, roles, "
          "codecs and run directory as a real run of the same flags)");
    visit("sim_compute", self.compute,
          "--simulate: time of a worker step: measured (thread CPU time of the real step) or "
          "fixed:SECONDS (modelled; the real step still runs)");
    visit("net_bandwidth", self.net_bandwidth,
          "--simulate: bandwidth of every worker's link: bps|Kbps|Mbps|Gbps");
    visit("net_latency", self.net_latency, "--simulate: one-way latency per message: s|ms|us|ns");
    visit("net_jitter", self.net_jitter,
          "--simulate: extra one-way delay, uniform in [0, jitter), seeded");
    visit("server_bandwidth", self.server_bandwidth,
          "--simulate: bandwidth of the server's NIC, shared by all workers (default: "
          "--net_bandwidth)");
    visit("host_bandwidth", self.host_bandwidth,
          "--simulate: the link of particular workers (a host on a slower network): "
          "WORKER:RATE,... e.g. \"3:10Mbps\" (the others have --net_bandwidth)");
    visit("net_mtu", self.net_mtu,
          "--simulate: MTU of every link in bytes: a message travels in packets of MTU - 52 bytes "
          "of data, each costing MTU + 14 bytes of the link's rate (IPv4, TCP with timestamps, "
          "Ethernet header: 95.6 % of the rate carries data at 1500); 0: count the messages' "
          "bytes only");
    visit("net_unfairness", self.net_unfairness,
          "--simulate: messages crossing one link at once share it as TCP streams do, in "
          "proportion to weights drawn uniformly from [1 - u, 1 + u] (seeded); 0: equal shares. "
          "The default 0.5 matches TCP through tc-capped links on Linux (bench/README.md, "
          "\"Calibrating the simulator\")");
    visit("stragglers", self.stragglers,
          "--simulate: slow workers: WORKER:xFACTOR,... e.g. \"2:x4,5:x2\"");
    visit("straggler_dist", self.straggler_dist,
          "--simulate: extra delay of every step of every worker: exp:MEAN (seconds, seeded)");
    visit("fail", self.fail,
          "--simulate: failing workers: WORKER@SECONDS,... e.g. \"3@12.5\" (virtual time)");
  }
};

// Parses and checks the flags; throws ConfigError naming the flag.
SimClusterOptions cluster_options(const SimOptions& sim, int node_count, std::uint64_t seed);

// The flags as given and as understood, for config.json.
nlohmann::json sim_config_json(const SimOptions& sim, int node_count, std::uint64_t seed);

}  // namespace psgd
