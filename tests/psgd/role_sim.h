#pragma once
// A tiny discrete-event driver for strategy roles in tests: n ToyLearner workers and a server,
// with every delivery and every computation an event that the test (or a seeded RNG) orders.
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <random>

#include "network/in_memory_transport.h"
#include "psgd/factory.h"
#include "tests/psgd/toy_learner.h"

namespace psgd::testing {

struct Reports final : ServerObserver {
  void on_worker(NodeId w, const WorkerReport& r) override { workers.emplace_back(w, r); }
  void on_round(const RoundStats& s) override { rounds.push_back(s); }
  void on_event(const StrategyEvent& e) override { events.push_back(e); }
  std::vector<std::pair<NodeId, WorkerReport>> workers;
  std::vector<RoundStats> rounds;
  std::vector<StrategyEvent> events;
};

struct RoleSim {
  static constexpr std::size_t kSize = 5;

  // Worker w pulls towards (target_of(w) + 1) * (i + 1): its own target by default; workers
  // that hold the same blocks (gc's groups) may be given the same one.
  RoleSim(
      const StrategyJob& spec, Schedule schedule,
      const std::function<int(int)>& target_of = [](int w) { return w; })
      : schedule(schedule), net(schedule.node_count), params(kSize) {
    for (std::size_t i = 0; i < kSize; ++i)
      params[i] = 0.1f * i - 0.2f;
    initial = params;
    server = make_server_role(spec, schedule,
                              ServerContext{.parameters = params,
                                            .optimizer = optimizer_spec(spec, schedule),
                                            .uplink = uplink_codec_spec(spec, 0),
                                            .clock = &clock,
                                            .observer = &reports});
    for (int w = 0; w < schedule.node_count; ++w) {
      std::vector<float> target(kSize);
      for (std::size_t i = 0; i < kSize; ++i)
        target[i] = static_cast<float>(target_of(w) + 1) * (i + 1);
      learners.push_back(std::make_unique<ToyLearner>(target, kSize));
      workers.push_back(make_worker_role(
          spec, schedule,
          WorkerContext{.learner = learners.back().get(),
                        .uplink = uplink_codec_spec(spec, static_cast<std::uint64_t>(w)),
                        .clock = &clock,
                        .id = w}));
    }
    computing.resize(workers.size(), false);
    sent.resize(workers.size(), 0);
  }

  void start() {
    Outbox out;
    server->on_start(out);
    route_from_server(out);
  }

  void route_from_server(const Outbox& out) { net.transport(kServer).send(out); }

  // What waits for worker w (from the server or a peer), and the oldest of it.
  std::size_t waiting(int w) const { return net.pending_for(w); }
  std::shared_ptr<const Message> next_for(int w) const { return net.peek_any(w); }
  // What worker w has sent the server that it has not received yet, and the oldest of it.
  std::size_t waiting_at_server(int w) const { return net.pending(w, kServer); }
  std::shared_ptr<const Message> next_from(int w) const { return net.peek(w, kServer); }
  // Drops everything waiting for worker w, or what it sent the server (a worker that died).
  void drop_for(int w) {
    for (NodeId from = kServer; from < schedule.node_count; ++from)
      if (from != w) net.clear(from, w);
  }
  void drop_at_server(int w) { net.clear(w, kServer); }

  // Event kinds: 0 deliver to the server from w, 1 deliver to worker w, 2 worker w computes.
  struct Event {
    int kind;
    int worker;
  };
  std::vector<Event> events() const {
    std::vector<Event> ev;
    for (std::size_t w = 0; w < workers.size(); ++w) {
      const int id = static_cast<int>(w);
      if (waiting_at_server(id) > 0) ev.push_back({0, id});
      if (waiting(id) > 0 && !computing[w]) ev.push_back({1, id});
      if (computing[w]) ev.push_back({2, static_cast<int>(w)});
    }
    return ev;
  }

  void run(const Event& e) {
    const auto w = static_cast<std::size_t>(e.worker);
    Outbox out;
    if (e.kind == 0) {
      auto m = net.take(e.worker, kServer);
      server->on_message(e.worker, *m, out);
      route_from_server(out);
    } else if (e.kind == 1) {
      auto m = net.take_any(e.worker);
      computing[w] = workers[w]->on_message(*m, out).compute;
      if (computing[w] && on_compute_start) on_compute_start(e.worker);
      route_from_worker(w, out);
    } else {
      computing[w] = workers[w]->compute_step(out).compute;
      route_from_worker(w, out);
    }
  }

  // Through worker w's transport: to the server, or straight to a peer (peer-to-peer
  // strategies).
  void route_from_worker(std::size_t w, const Outbox& out) {
    for (const auto& env : out)
      sent[w] += env.to == kServer;
    net.transport(static_cast<NodeId>(w)).send(out);
  }
  // Runs random events until the server is finished; false if nothing can happen any more.
  bool run_random(std::uint64_t seed, int max_events = 100000) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < max_events && !server->finished(); ++i) {
      const auto ev = events();
      if (ev.empty()) return false;
      run(ev[rng() % ev.size()]);
    }
    return server->finished();
  }

  Schedule schedule;
  InMemoryNetwork net;
  ManualClock clock;
  Reports reports;
  std::vector<float> params, initial;
  std::unique_ptr<ServerRole> server;
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<WorkerRole>> workers;
  std::vector<bool> computing;
  std::vector<std::int64_t> sent;  // messages each worker has sent to the server
  std::function<void(int worker)> on_compute_start;
};

inline StrategyJob job(const std::string& psgd, int n, double lr, double momentum = 0,
                       double weight_decay = 0) {
  StrategyJob s;
  s.psgd = psgd;
  s.node_count = n;
  s.learn_rate = lr;
  s.momentum = momentum;
  s.weight_decay = weight_decay;
  return s;
}

}  // namespace psgd::testing
