#pragma once
// A strategy run in one thread (tests/psgd/role_sim.h) with init_server's checkpoint protocol
// (experiments/server/checkpointer.h) played by hand: when an update makes a checkpoint due, the
// parameter-server strategies get a StateRequest before that update's messages and hold what a
// worker sends after its WorkerState; the peer-to-peer workers offer their state when their own
// iteration reaches the checkpoint. The first complete checkpoint is kept, and resume() builds a
// fresh run from it as init_server --resume and the clients do: the server role restored, each
// worker's learner past its batch count, each worker role restored from its state.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>
#include <random>

#include "psgd/checkpoint.h"
#include "tests/psgd/role_sim.h"

namespace psgd::testing {

struct Saved {
  std::int64_t iteration = 0;
  std::vector<float> params;
  std::vector<std::uint8_t> role_state;
  std::vector<std::int64_t> worker_batches;
  std::vector<std::vector<std::uint8_t>> worker_states;
};

class CheckpointedRun {
 public:
  CheckpointedRun(const StrategyJob& spec, Schedule schedule, std::int64_t every)
      : sim(spec, schedule, target_of(spec)), every_(every) {
    p2p_ = strategy_of(spec).topology == Topology::kPeerToPeer;
    const auto n = static_cast<std::size_t>(schedule.node_count);
    states_.resize(n);
    offered_.resize(n);
    offered_at_.assign(n, 0);
  }

  // A run that continues from `saved`, as init_server --resume and its clients build it.
  CheckpointedRun(const StrategyJob& spec, Schedule schedule, std::int64_t every,
                  const Saved& saved)
      : CheckpointedRun(spec, schedule, every) {
    sim.params = saved.params;
    sim.server->restore(saved.role_state);
    for (int w = 0; w < schedule.node_count; ++w) {
      const auto i = static_cast<std::size_t>(w);
      for (std::int64_t b = 0; b < saved.worker_batches[i]; ++b)
        sim.learners[i]->compute_gradient();
      sim.workers[i]->restore(saved.worker_states[i]);
    }
  }

  // Runs random events (seeded) until the server is finished; false if the run stalls.
  bool run(std::uint64_t seed, int max_events = 200000) {
    sim.start();
    std::mt19937_64 rng(seed);
    for (int i = 0; i < max_events && !sim.server->finished(); ++i) {
      const auto ev = sim.events();
      if (ev.empty()) return false;
      step(ev[rng() % ev.size()]);
    }
    return sim.server->finished();
  }

  RoleSim sim;
  std::optional<Saved> saved;

  // gc and ndc: the workers of a group hold the same blocks, so they compute the same gradients
  // (which replica's arrives first must not matter, as in a real run).
  static std::function<int(int)> target_of(const StrategyJob& spec) {
    if (const CodingEntry* c = coding_of(spec);
        c && c->layout == BlockLayout::kFractionalRepetition) {
      const int r = spec.redundancy;
      return [r](int w) { return w / r; };
    }
    return [](int w) { return w; };
  }

 private:
  void step(const RoleSim::Event& e) {
    const auto w = static_cast<std::size_t>(e.worker);
    if (e.kind == 0) {  // the server receives from worker w
      auto m = sim.net.take(e.worker, kServer);
      if (const auto* s = std::get_if<WorkerState>(m.get())) {
        on_state(e.worker, *s);
      } else if (collecting_ && states_[w]) {
        held_.push_back({e.worker, m});
      } else {
        dispatch(e.worker, *m);
      }
      return;
    }
    Outbox out;
    if (e.kind == 1) {
      auto m = sim.net.take_any(e.worker);
      if (std::holds_alternative<StateRequest>(*m)) {
        send_state(e.worker, false);
        return;
      }
      sim.computing[w] = sim.workers[w]->on_message(*m, out).compute;
    } else {
      sim.computing[w] = sim.workers[w]->compute_step(out).compute;
    }
    sim.route_from_worker(w, out);
    if (p2p_) {  // the client's offer_state()
      const std::int64_t now = sim.workers[w]->iterations_done();
      if (now == offered_at_[w] + 1 && checkpoint_due(sim.schedule, every_, offered_at_[w], now)) {
        send_state(e.worker, true);
      }
      offered_at_[w] = now;
    }
  }

  void send_state(int w, bool with_params) {
    WorkerState s{.iteration = sim.workers[static_cast<std::size_t>(w)]->iterations_done(),
                  .state = sim.workers[static_cast<std::size_t>(w)]->snapshot()};
    if (with_params) {
      const auto p = sim.learners[static_cast<std::size_t>(w)]->parameters();
      s.params.assign(p.begin(), p.end());
    }
    Outbox out{{kServer, std::make_shared<const Message>(std::move(s))}};
    sim.net.transport(w).send(out);
  }

  void dispatch(int w, const Message& m) {
    Outbox out;
    const std::int64_t before = sim.server->iteration();
    sim.server->on_message(w, m, out);
    const bool due = !collecting_ && !saved &&
                     checkpoint_due(sim.schedule, every_, before, sim.server->iteration());
    if (due && !p2p_) {
      Outbox requests;
      for (int v = 0; v < sim.schedule.node_count; ++v)
        requests.push_back({v, std::make_shared<const Message>(StateRequest{})});
      sim.route_from_server(requests);
    }
    sim.route_from_server(out);
    if (due) {
      collecting_ = true;
      iteration_ = sim.server->iteration();
      for (std::size_t v = 0; v < states_.size(); ++v) {
        if (auto it = offered_[v].find(iteration_); it != offered_[v].end())
          states_[v] = it->second;
        offered_[v].erase(offered_[v].begin(), offered_[v].upper_bound(iteration_));
      }
      maybe_write();
    }
  }

  void on_state(int w, const WorkerState& s) {
    const auto i = static_cast<std::size_t>(w);
    if (collecting_ && !states_[i] && (!p2p_ || s.iteration == iteration_)) {
      states_[i] = s;
      maybe_write();
    } else if (p2p_) {
      offered_[i][s.iteration] = s;
    }
  }

  void maybe_write() {
    for (const auto& s : states_)
      if (!s) return;
    Saved c{.iteration = sim.server->iteration(),
            .params = p2p_ ? states_[0]->params : sim.params,
            .role_state = sim.server->snapshot()};
    for (int v = 0; v < sim.schedule.node_count; ++v) {
      c.worker_batches.push_back(sim.server->worker_batches(v));
      c.worker_states.push_back(states_[static_cast<std::size_t>(v)]->state);
    }
    saved = std::move(c);
    collecting_ = false;
    for (auto& s : states_)
      s.reset();
    std::deque<std::pair<int, std::shared_ptr<const Message>>> held;
    held.swap(held_);
    for (auto& [v, m] : held)
      dispatch(v, *m);
  }

  std::int64_t every_;
  bool p2p_ = false;
  bool collecting_ = false;
  std::int64_t iteration_ = 0;
  std::vector<std::optional<WorkerState>> states_;
  std::vector<std::map<std::int64_t, WorkerState>> offered_;  // peer-to-peer, by iteration
  std::vector<std::int64_t> offered_at_;
  std::deque<std::pair<int, std::shared_ptr<const Message>>> held_;
};

}  // namespace psgd::testing
