#include "experiments/sim_cluster.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "network/frame.h"

namespace psgd {

static_assert(kServer == sim::kServerNode, "the network model and the roles name the server alike");

// A Learner whose compute_gradient() moves its node's clock by the modelled step time.
class SimCluster::Timed final : public Learner {
 public:
  Timed(Learner* inner, sim::NodeClock* clock, const ComputeModel& compute, double slowdown,
        double extra_mean_s, std::uint64_t seed)
      : inner_(inner),
        clock_(clock),
        compute_(compute),
        slowdown_(slowdown),
        extra_mean_s_(extra_mean_s),
        rng_(seed) {}

  std::span<float> parameters() override { return inner_->parameters(); }
  std::span<const float> gradients() const override { return inner_->gradients(); }
  EvalStats evaluate() override { return inner_->evaluate(); }
  std::span<float> buffers() override { return inner_->buffers(); }
  StepStats compute_gradient() override {
    const StepStats stats = inner_->compute_gradient();
    // Measured time is already on the clock (its CPU time, scaled by the slowdown).
    if (!compute_.measured) clock_->advance(compute_.fixed_s * slowdown_);
    if (extra_mean_s_ > 0) {
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1)
      clock_->advance(-extra_mean_s_ * std::log1p(-u));
    }
    return stats;
  }
  // Staged (allreduce --overlap): with a fixed step time, the forward pass takes a third of it
  // and each backward piece a share of the other two thirds in proportion to the parameters it
  // makes final (a layer's multiply-adds, forward and backward, grow with its weights; backward
  // does about twice the forward's). Measured time needs no split: each piece's CPU time is on
  // the clock as it runs.
  std::vector<std::size_t> backward_cuts() const override { return inner_->backward_cuts(); }
  StepStats begin_gradient(std::span<const std::size_t> cuts) override {
    const StepStats stats = inner_->begin_gradient(cuts);
    ready_ = inner_->gradients().size();
    if (!compute_.measured) clock_->advance(compute_.fixed_s * slowdown_ / 3);
    if (extra_mean_s_ > 0) {
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1)
      clock_->advance(-extra_mean_s_ * std::log1p(-u));
    }
    return stats;
  }
  std::size_t continue_backward() override {
    const std::size_t ready = inner_->continue_backward();
    const std::size_t total = inner_->gradients().size();
    if (!compute_.measured && total > 0 && ready < ready_) {
      clock_->advance(compute_.fixed_s * slowdown_ * 2 / 3 * static_cast<double>(ready_ - ready) /
                      static_cast<double>(total));
    }
    ready_ = ready;
    return ready;
  }

 private:
  std::size_t ready_ = 0;  // of the staged step: the gradient is final from here on
  Learner* inner_;
  sim::NodeClock* clock_;
  ComputeModel compute_;
  double slowdown_;
  double extra_mean_s_;
  Rng rng_;
};

SimCluster::SimCluster(SimClusterOptions options)
    : opts_(std::move(options)),
      net_(opts_.node_count, opts_.network),
      server_clock_(opts_.compute.measured, 1.0),
      free_at_(static_cast<std::size_t>(opts_.node_count) + 1, 0.0),
      detaching_(static_cast<std::size_t>(opts_.node_count), false) {
  for (NodeId node = kServer; node < opts_.node_count; ++node)
    links_.push_back(std::make_unique<Link>(*this, node));
  const auto n = static_cast<std::size_t>(opts_.node_count);
  if (opts_.slowdown.empty()) opts_.slowdown.assign(n, 1.0);
  if (opts_.fail_at.empty()) opts_.fail_at.assign(n, kNever);
  PSGD_CHECK(opts_.slowdown.size() == n && opts_.fail_at.size() == n,
             "slowdown and fail_at need one entry per worker");
  for (std::size_t w = 0; w < n; ++w) {
    PSGD_CHECK(opts_.slowdown[w] > 0, "worker {} slowdown {}", w, opts_.slowdown[w]);
    worker_clocks_.push_back(
        std::make_unique<sim::NodeClock>(opts_.compute.measured, opts_.slowdown[w]));
  }
  timed_.resize(n);
}

SimCluster::~SimCluster() = default;

sim::NodeClock& SimCluster::worker_clock(int worker) {
  return *worker_clocks_.at(static_cast<std::size_t>(worker));
}

sim::NodeClock& SimCluster::clock_of(NodeId node) {
  return node == kServer ? server_clock_ : *worker_clocks_.at(static_cast<std::size_t>(node));
}

Learner* SimCluster::timed_learner(int worker, Learner* learner) {
  const auto w = static_cast<std::size_t>(worker);
  timed_.at(w) = std::make_unique<Timed>(learner, worker_clocks_.at(w).get(), opts_.compute,
                                         opts_.slowdown[w], opts_.extra_delay_mean_s,
                                         seeds::of(opts_.seed, seeds::sim_straggler(w)));
  return timed_[w].get();
}

bool SimCluster::failed(NodeId node, double t) const {
  return node != kServer && t >= opts_.fail_at[static_cast<std::size_t>(node)];
}

void SimCluster::end(bool ok, std::string status) {
  if (done_) return;
  done_ = true;
  result_.ok = ok;
  result_.status = ok ? std::move(status) : "failed: " + status;
}

void SimCluster::stop(std::string status) {
  if (done_) return;
  done_ = true;
  result_.ok = false;
  result_.status = std::move(status);
}

SimResult SimCluster::run(ServerRole& server, std::span<WorkerRole* const> workers,
                          const std::function<void()>& after_server_event) {
  PSGD_CHECK_EQ(workers.size(), static_cast<std::size_t>(opts_.node_count),
                "one worker role per worker");
  PSGD_CHECK(server_ == nullptr, "SimCluster::run() runs once");
  server_ = &server;
  workers_.assign(workers.begin(), workers.end());
  after_server_event_ = after_server_event;

  for (int w = 0; w < opts_.node_count; ++w) {
    const double t = opts_.fail_at[static_cast<std::size_t>(w)];
    if (t != kNever) queue_.schedule(t, [this, w] { worker_lost(w); });
  }
  queue_.schedule(0, [this] {
    at_node(kServer, [this] {
      Outbox out;
      server_clock_.begin(queue_.now());
      server_->on_start(out);
      server_clock_.end();
      free_at(kServer) = server_clock_.now();
      post(kServer, std::move(out));
      after_server();
    });
  });
  while (!done_ && queue_.step()) {
  }
  if (!done_) {
    end(false, fmt::format("the simulation stalled at {:.6g} s after {} iterations: nothing in "
                           "flight and nothing to compute, but the strategy has not finished",
                           queue_.now(), server_->iteration()));
  }
  result_.virtual_s = queue_.now();
  result_.events = queue_.scheduled();
  return result_;
}

void SimCluster::at_node(NodeId node, std::function<void()> handle) {
  if (done_) return;
  const double t = queue_.now();
  if (failed(node, t)) return;  // a failed worker does nothing more
  if (free_at(node) > t) {
    // Busy: wait in line. Events re-queued for one node keep their order (sequence numbers).
    queue_.schedule(free_at(node),
                    [this, node, h = std::move(handle)]() mutable { at_node(node, std::move(h)); });
    return;
  }
  handle();
}

// A node's Transport: what it sends becomes legs of its next departure (post()).
class SimCluster::Link final : public Transport {
 public:
  Link(SimCluster& cluster, NodeId self)
      : Transport(cluster.opts_.node_count), cluster_(cluster), self_(self) {}

 protected:
  void deliver(NodeId to, const std::shared_ptr<const EncodedFrame>& frame) override {
    PSGD_CHECK(to >= kServer && to < cluster_.opts_.node_count && to != self_,
               "node {} addressed node {}", self_, to);
    cluster_.departing_.push_back({to, frame->message(), frame->size()});
  }

 private:
  SimCluster& cluster_;
  NodeId self_;
};

Transport& SimCluster::transport(NodeId node) {
  return *links_.at(static_cast<std::size_t>(node + 1));
}

std::uint64_t SimCluster::bytes_up(int worker) const {
  return links_.front()->traffic(worker).received;
}

std::uint64_t SimCluster::bytes_down(int worker) const {
  return links_.front()->traffic(worker).sent;
}

LinkTraffic SimCluster::worker_traffic(int worker) const {
  const Link& own = *links_.at(static_cast<std::size_t>(worker + 1));
  LinkTraffic sum;
  for (NodeId peer = kServer; peer < opts_.node_count; ++peer) {
    const LinkTraffic t = own.traffic(peer);
    sum.sent += t.sent;
    sum.received += t.received;
  }
  return sum;
}

void SimCluster::post(NodeId from, Outbox&& out) {
  if (out.empty()) return;
  const double depart = clock_of(from).now();
  if (failed(from, depart)) return;  // it failed before the handler returned: nothing leaves
  departing_.clear();
  transport(from).send(out);  // the one fan-out: counts the bytes, fills departing_
  queue_.schedule(depart, [this, from, legs = std::move(departing_)] {
    for (const Leg& leg : legs) {
      const std::uint64_t id = net_.send(from, leg.to, queue_.now(), leg.bytes);
      in_flight_.emplace(id, leg);
    }
    network_changed();
  });
  departing_ = {};
}

// The network's next message off the wire is at net_.next_finish(): one event for it, replaced
// whenever a send moves it (a stale event finds another generation and does nothing).
void SimCluster::network_changed() {
  const double t = net_.next_finish();
  if (t == network_event_at_) return;
  network_event_at_ = t;
  const std::uint64_t generation = ++network_generation_;
  if (t == kNever) return;
  queue_.schedule(std::max(t, queue_.now()), [this, generation] {
    if (generation != network_generation_) return;
    network_event_at_ = kNever;
    for (const sim::Delivery& d : net_.advance(queue_.now())) {
      auto it = in_flight_.find(d.id);
      PSGD_CHECK(it != in_flight_.end(), "the network delivered message {} twice", d.id);
      Leg leg = std::move(it->second);
      in_flight_.erase(it);
      queue_.schedule(d.delivery, [this, from = static_cast<NodeId>(d.from), leg] {
        // Counted as received once it has arrived, as a TCP driver counts it.
        transport(leg.to).received(from, leg.bytes);
        deliver(from, leg.to, leg.message);
      });
    }
    network_changed();
  });
}

void SimCluster::deliver(NodeId from, NodeId to, MessagePtr message) {
  at_node(to, [this, from, to, message] {
    Outbox out;
    sim::NodeClock& clock = clock_of(to);
    clock.begin(queue_.now());
    WorkerAction action;
    try {
      if (to == kServer) {
        server_->on_message(from, *message, out);
      } else {
        action = workers_[static_cast<std::size_t>(to)]->on_message(*message, out);
      }
    } catch (const ProtocolError& e) {
      clock.end();
      end(false, to == kServer ? fmt::format("worker {} broke the protocol: {}", from, e.what())
                               : fmt::format("worker {}: {}", to, e.what()));
      return;
    }
    clock.end();
    free_at(to) = clock.now();
    post(to, std::move(out));
    if (to == kServer) {
      after_server();
    } else if (action.compute) {
      PSGD_CHECK(!detaching_[static_cast<std::size_t>(to)],
                 "worker {} asked to compute while its detached computation runs", to);
      queue_.schedule(free_at(to), [this, to, d = action.detached] { compute(to, d); });
    }
  });
}

void SimCluster::compute(NodeId worker, bool detached) {
  at_node(worker, [this, worker, detached] {
    const auto w = static_cast<std::size_t>(worker);
    Outbox out;
    sim::NodeClock& clock = clock_of(worker);
    clock.begin(queue_.now());
    WorkerAction action;
    try {
      if (detached) {
        workers_[w]->compute_detached();
      } else {
        action = workers_[w]->compute_step(out);
      }
    } catch (const ProtocolError& e) {
      clock.end();
      end(false, fmt::format("worker {}: {}", worker, e.what()));
      return;
    }
    clock.end();
    if (detached) {
      // The model of a communication thread (WorkerRole::compute_detached): the computation
      // runs on a core of its own. Computed here at once, it ends at begin + its measured or
      // modelled time, but the node stays free: messages that reach it meanwhile are handled at
      // their arrival, each taking the time it measures (or none, modelled) on the event thread
      // without delaying the computation, as with a spare core and no contention between the
      // two. compute_step() then runs at the computation's end, or when the handler running at
      // that moment returns.
      detaching_[w] = true;
      queue_.schedule(clock.now(), [this, worker] {
        detaching_[static_cast<std::size_t>(worker)] = false;
        compute(worker, false);
      });
      return;
    }
    free_at(worker) = clock.now();
    post(worker, std::move(out));
    if (action.compute) {
      queue_.schedule(free_at(worker), [this, worker, d = action.detached] { compute(worker, d); });
    }
  });
}

void SimCluster::worker_lost(NodeId worker) {
  const double t = queue_.now();
  at_node(kServer, [this, worker, t] {
    Outbox out;
    server_clock_.begin(queue_.now());
    const bool go_on = server_->on_worker_lost(worker, out);
    server_clock_.end();
    free_at(kServer) = server_clock_.now();
    if (on_lost_) on_lost_(worker, t, go_on);
    if (!go_on) {
      end(false, fmt::format("worker {} failed at {:g} s (simulated)", worker, t));
      return;
    }
    post(kServer, std::move(out));
    after_server();
  });
}

void SimCluster::after_server() {
  if (after_server_event_) after_server_event_();
  if (server_->finished()) end(true, "completed");
}

}  // namespace psgd
