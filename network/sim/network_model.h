#pragma once
// NetworkModel: when does a message sent in the simulated cluster arrive?
//
// The cluster is a star: every node (the server and each worker) has one full-duplex link to a
// switch, of its own rate. Each link direction is a port: a node's egress (what it sends) and its
// ingress (what it receives). A message is a TCP transfer (a flow) from the sender's egress to the
// receiver's ingress, and flows share ports as TCP streams share a bottleneck, not one at a time:
//
//   - rates: weighted max-min fair shares (progressive filling): every active flow gets
//     weight x lambda, lambda rising until a port it crosses is full; flows crossing a full port
//     keep their rate, the others go on rising. With n gradients arriving together the server's
//     ingress is split n ways, and a broadcast of one message to n workers is n flows sharing the
//     server's egress. Rates are recomputed whenever a flow starts or ends.
//   - unfairness: concurrent TCP streams through one bottleneck do not share it equally over a
//     fraction of a second (the first to finish of 4 streams through a tc-capped link finishes at
//     0.5-0.9 of the time of the last, measured: bench/README.md "Calibrating the simulator").
//     Each flow's weight is drawn when it starts, uniform in [1 - u, 1 + u] (u = `unfairness`,
//     seeded); u = 0 gives exactly equal shares.
//   - framing: the rate counts whole packets, as a NIC (and tc) does. TCP carries MTU - 52 bytes
//     of a message per packet (IPv4 20, TCP with timestamps 32) and each packet costs MTU + 14
//     bytes of the link (Ethernet header), so a message of S bytes occupies
//     S + ceil(S / (MTU - 52)) * 66 bytes of rate (95.6 % efficiency at MTU 1500). mtu = 0 counts
//     S only.
//   - one connection per pair: messages from a to b travel in order, one after the other (a
//     TCP stream), so only the oldest unfinished message of each pair is active.
//   - delivery = the moment the last bit has left + latency + jitter (jitter uniform in
//     [0, jitter), seeded); deliveries on one pair never overtake each other.
//
// What it leaves out (bench/README.md has the measured size of each): TCP slow start and its
// restart after idle, ACK traffic on the reverse direction (~2 % of it), a token bucket's burst
// after idle, and the CPU time of moving bytes.
//
// Use: send() each message as it leaves (calls in non-decreasing time); next_finish() says when
// the next message will have left; advance(t) (t <= next_finish()) returns those that have, in
// the order they finished. Sizes are the real encoded frame sizes, so codecs that shrink messages
// show their benefit.
//
// Threading: one thread.
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace psgd::sim {

inline constexpr int kServerNode = -1;  // same value as psgd::kServer

struct NetworkOptions {
  double bandwidth_bps = 1e9;                // every worker's link, each direction
  double server_bandwidth_bps = 0;           // the server's link; 0: bandwidth_bps
  std::vector<double> worker_bandwidth_bps;  // per worker (0 or absent: bandwidth_bps)
  double latency_s = 100e-6;                 // one way, per message
  double jitter_s = 0;                       // extra one-way delay, uniform in [0, jitter_s)
  int mtu = 1500;                            // bytes; 0: no per-packet overhead
  double unfairness = 0.5;                   // flow weights uniform in [1 - u, 1 + u]
  std::uint64_t seed = 1;                    // for the jitter and the weights
};

struct Delivery {
  std::uint64_t id = 0;  // send()'s return value
  int from = 0, to = 0;
  double start = 0;     // the message became its pair's active flow
  double finish = 0;    // its last bit has left
  double delivery = 0;  // the receiver has it
};

class NetworkModel {
 public:
  NetworkModel(int workers, NetworkOptions options);

  // A message of `bytes` from node `from` to node `to` (kServerNode or a worker index) leaves
  // at `now` (>= every earlier call's time). Returns its id, counting from 0.
  std::uint64_t send(int from, int to, double now, std::uint64_t bytes);
  // The time at which the next message will have left if nothing else is sent (infinity when
  // nothing is in flight).
  double next_finish() const;
  // Moves to `now` (<= next_finish()) and returns the messages that have left by then.
  std::vector<Delivery> advance(double now);

  // Bytes of link rate a message of `bytes` occupies (its packets' headers included).
  double wire_bytes(std::uint64_t bytes) const;
  const NetworkOptions& options() const { return options_; }

 private:
  struct Flow {
    int from = 0, to = 0;
    double bits = 0;    // left to send
    double weight = 1;  // its share, drawn when it becomes active
    double rate = 0;    // bits/s, from the last allocation
    double start = -1;  // when it became active (-1: queued behind its pair)
  };

  std::size_t port(int node) const;
  double bandwidth(int node) const;
  void progress(double now);  // moves active flows to `now`, collecting the finished ones
  void activate(std::uint64_t id, double now);
  void allocate();  // weighted max-min rates of the active flows

  NetworkOptions options_;
  int workers_;
  double now_ = 0;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, Flow> flows_;  // unfinished, by id
  std::vector<std::uint64_t> active_;    // ids of the flows now on the wire, ascending
  std::map<std::pair<int, int>, std::deque<std::uint64_t>> pairs_;  // per pair, in send order
  std::vector<Delivery> finished_;  // left the wire, not yet returned by advance()
  std::map<std::pair<int, int>, double> last_delivery_;
  Rng jitter_rng_;
  Rng weight_rng_;
};

}  // namespace psgd::sim
