#include "network/sim/network_model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/seeds.h"

namespace psgd::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// IPv4 (20) + TCP with timestamps (32) inside a packet, Ethernet's header (14) outside it.
constexpr int kTcpIpHeader = 52;
constexpr int kEthernetHeader = 14;

double uniform01(Rng& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// A flow whose remaining bits would take less than a picosecond is done (rounding).
bool done(double bits, double rate) {
  return bits <= std::max(1e-6, rate * 1e-12);
}

}  // namespace

NetworkModel::NetworkModel(int workers, NetworkOptions options)
    : options_(std::move(options)),
      workers_(workers),
      jitter_rng_(seeds::of(options_.seed, seeds::kSimJitter)),
      weight_rng_(seeds::of(options_.seed, seeds::kSimShare)) {
  if (options_.server_bandwidth_bps <= 0) options_.server_bandwidth_bps = options_.bandwidth_bps;
  options_.worker_bandwidth_bps.resize(static_cast<std::size_t>(std::max(workers, 0)), 0.0);
  for (double& b : options_.worker_bandwidth_bps) {
    if (b <= 0) b = options_.bandwidth_bps;
  }
  PSGD_CHECK(workers >= 1 && options_.bandwidth_bps > 0 && options_.latency_s >= 0 &&
                 options_.jitter_s >= 0,
             "invalid network model");
  PSGD_CHECK(options_.mtu == 0 || options_.mtu > kTcpIpHeader, "MTU {} leaves no room for data",
             options_.mtu);
  PSGD_CHECK(options_.unfairness >= 0 && options_.unfairness < 1, "unfairness {} must be in [0, 1)",
             options_.unfairness);
}

std::size_t NetworkModel::port(int node) const {
  PSGD_CHECK(node >= kServerNode && node < workers_, "no node {} in a cluster of {} workers", node,
             workers_);
  return static_cast<std::size_t>(node + 1);
}

double NetworkModel::bandwidth(int node) const {
  return node == kServerNode ? options_.server_bandwidth_bps
                             : options_.worker_bandwidth_bps[static_cast<std::size_t>(node)];
}

double NetworkModel::wire_bytes(std::uint64_t bytes) const {
  const auto s = static_cast<double>(bytes);
  if (options_.mtu == 0 || bytes == 0) return s;
  const double packets = std::ceil(s / (options_.mtu - kTcpIpHeader));
  return s + packets * (kTcpIpHeader + kEthernetHeader);
}

std::uint64_t NetworkModel::send(int from, int to, double now, std::uint64_t bytes) {
  (void)port(from);  // checks both ends exist
  (void)port(to);
  PSGD_CHECK(from != to, "node {} sent a message to itself", from);
  PSGD_CHECK(now >= now_, "message sent at {} s, before the model's time {} s", now, now_);
  progress(now);
  const std::uint64_t id = next_id_++;
  flows_[id] = Flow{.from = from, .to = to, .bits = wire_bytes(bytes) * 8.0};
  auto& queue = pairs_[{from, to}];
  queue.push_back(id);
  if (queue.size() == 1) {
    activate(id, now);
    allocate();
  }
  return id;
}

void NetworkModel::activate(std::uint64_t id, double now) {
  Flow& f = flows_.at(id);
  f.start = now;
  f.weight = 1.0 + options_.unfairness * (2.0 * uniform01(weight_rng_) - 1.0);
  active_.insert(std::upper_bound(active_.begin(), active_.end(), id), id);
}

void NetworkModel::allocate() {
  // Progressive filling: lambda rises for every unfrozen flow; when a port is full, the flows
  // through it freeze at weight x lambda and leave their share of their other port.
  const std::size_t ports = static_cast<std::size_t>(workers_) + 1;
  std::vector<double> cap_out(ports), cap_in(ports), w_out(ports), w_in(ports);
  for (std::size_t p = 0; p < ports; ++p)
    cap_out[p] = cap_in[p] = bandwidth(static_cast<int>(p) - 1);
  std::vector<Flow*> open;
  for (std::uint64_t id : active_)
    open.push_back(&flows_.at(id));
  while (!open.empty()) {
    // The weights still rising on each port (summed afresh: no rounding residue of frozen ones).
    std::fill(w_out.begin(), w_out.end(), 0.0);
    std::fill(w_in.begin(), w_in.end(), 0.0);
    for (const Flow* f : open) {
      w_out[port(f->from)] += f->weight;
      w_in[port(f->to)] += f->weight;
    }
    double lambda = kInf;
    for (std::size_t p = 0; p < ports; ++p) {
      if (w_out[p] > 0) lambda = std::min(lambda, std::max(cap_out[p], 0.0) / w_out[p]);
      if (w_in[p] > 0) lambda = std::min(lambda, std::max(cap_in[p], 0.0) / w_in[p]);
    }
    auto full = [&](double cap, double w) { return cap <= lambda * w * (1 + 1e-9); };
    std::vector<Flow*> still_open, frozen;
    for (Flow* f : open) {
      const std::size_t a = port(f->from), b = port(f->to);
      (full(cap_out[a], w_out[a]) || full(cap_in[b], w_in[b]) ? frozen : still_open).push_back(f);
    }
    PSGD_CHECK(!frozen.empty(), "rate allocation made no progress");
    for (Flow* f : frozen) {
      f->rate = f->weight * lambda;
      cap_out[port(f->from)] -= f->rate;
      cap_in[port(f->to)] -= f->rate;
    }
    open = std::move(still_open);
  }
}

void NetworkModel::progress(double now) {
  while (!active_.empty()) {
    double step = kInf;
    std::uint64_t first = 0;
    for (std::uint64_t id : active_) {
      const Flow& f = flows_.at(id);
      if (f.bits / f.rate < step) step = f.bits / f.rate, first = id;
    }
    const bool finishes = now_ + step <= now;
    const double dt = finishes ? step : now - now_;
    for (std::uint64_t id : active_) {
      Flow& f = flows_.at(id);
      f.bits -= f.rate * dt;
    }
    now_ = finishes ? now_ + dt : now;
    if (!finishes) break;
    flows_.at(first).bits = 0;  // whatever rounding left of the one that set the step
    // Those done leave (in id order); the next message of their pair starts now.
    std::vector<std::uint64_t> next;
    for (auto it = active_.begin(); it != active_.end();) {
      const Flow& f = flows_.at(*it);
      if (!done(f.bits, f.rate)) {
        ++it;
        continue;
      }
      double delay = options_.latency_s;
      if (options_.jitter_s > 0) delay += uniform01(jitter_rng_) * options_.jitter_s;
      double& last = last_delivery_[{f.from, f.to}];
      last = std::max(now_ + delay, last);
      finished_.push_back(Delivery{.id = *it,
                                   .from = f.from,
                                   .to = f.to,
                                   .start = f.start,
                                   .finish = now_,
                                   .delivery = last});
      auto& queue = pairs_[{f.from, f.to}];
      queue.pop_front();
      if (!queue.empty()) next.push_back(queue.front());
      flows_.erase(*it);
      it = active_.erase(it);
    }
    for (std::uint64_t id : next)
      activate(id, now_);
    allocate();
  }
  if (active_.empty()) now_ = std::max(now_, now);
}

double NetworkModel::next_finish() const {
  if (!finished_.empty()) return now_;
  double t = kInf;
  for (std::uint64_t id : active_) {
    const Flow& f = flows_.at(id);
    t = std::min(t, now_ + f.bits / f.rate);
  }
  return t;
}

std::vector<Delivery> NetworkModel::advance(double now) {
  PSGD_CHECK(now >= now_, "the network model cannot go back from {} s to {} s", now_, now);
  progress(now);
  return std::exchange(finished_, {});
}

}  // namespace psgd::sim
