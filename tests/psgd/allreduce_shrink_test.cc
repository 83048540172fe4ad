// --allreduce_on_loss shrink as roles (psgd/allreduce.h): workers are lost at random points of
// random event orders; the survivors re-form the ring, agree on the iteration they continue
// after, and end with bit-identical parameters, which the server holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/error.h"
#include "psgd/allreduce.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

testing::RoleSim shrinking(int n, const Schedule& schedule, double momentum = 0.9) {
  StrategyJob spec = testing::job("allreduce", n, 0.1, momentum);
  spec.allreduce_on_loss = "shrink";
  return testing::RoleSim(spec, schedule);
}

// Runs random events of the live workers; at the events named in `loss_at` the next worker of
// `lost` dies: what waits for it is dropped, and with `keep_sent` what it had sent still arrives
// (it was on the wire), otherwise that is lost too. Returns whether the server finished.
bool run_with_losses(testing::RoleSim& sim, std::uint64_t seed, std::vector<int> loss_at,
                     std::vector<int> lost, bool keep_sent) {
  std::mt19937_64 rng(seed);
  std::set<int> dead;
  for (int i = 0; i < 200000 && !sim.server->finished(); ++i) {
    if (!loss_at.empty() && i == loss_at.front()) {
      const int w = lost.front();
      loss_at.erase(loss_at.begin());
      lost.erase(lost.begin());
      dead.insert(w);
      sim.drop_for(w);
      if (!keep_sent) {
        sim.drop_at_server(w);
        for (int to = 0; to < sim.schedule.node_count; ++to)
          if (to != w) sim.net.clear(w, to);
      }
      Outbox out;
      if (!sim.server->on_worker_lost(w, out)) return false;
      sim.route_from_server(out);
      continue;
    }
    auto events = sim.events();
    std::erase_if(events, [&](const testing::RoleSim::Event& e) {
      return dead.count(e.worker) > 0 && e.kind != 0;  // a dead worker does nothing more
    });
    if (events.empty()) return false;
    sim.run(events[rng() % events.size()]);
    for (int w : dead)
      sim.drop_for(w);  // messages to a dead worker go nowhere
  }
  return sim.server->finished();
}

void expect_survivors_agree(const testing::RoleSim& sim, const std::set<int>& lost) {
  for (int w = 0; w < sim.schedule.node_count; ++w) {
    if (lost.count(w)) continue;
    const auto p = sim.learners[static_cast<std::size_t>(w)]->parameters();
    EXPECT_EQ(std::vector<float>(p.begin(), p.end()), sim.params) << "worker " << w;
    EXPECT_EQ(sim.workers[static_cast<std::size_t>(w)]->iterations_done(),
              sim.schedule.total_iterations())
        << "worker " << w;
  }
}

TEST(AllreduceShrink, SurvivorsReformTheRingAndEndIdentical) {
  const int n = 4;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 5, .epochs = 3};
  int reformed = 0, adopted = 0;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    auto sim = shrinking(n, schedule);
    sim.start();
    const int victim = static_cast<int>(seed % n);
    const int at = static_cast<int>(seed * 37 % 550);  // anywhere in the run
    ASSERT_TRUE(run_with_losses(sim, seed, {at}, {victim}, seed % 2 == 0)) << "seed " << seed;
    EXPECT_EQ(sim.server->iteration(), schedule.total_iterations());
    expect_survivors_agree(sim, {victim});
    // Every round closed once, in order; those after the loss with the 3 survivors.
    ASSERT_EQ(sim.reports.rounds.size(), static_cast<std::size_t>(schedule.total_iterations()));
    for (std::size_t r = 0; r < sim.reports.rounds.size(); ++r)
      EXPECT_EQ(sim.reports.rounds[r].iteration, static_cast<std::int64_t>(r) + 1);
    if (sim.reports.events.empty()) continue;  // lost after its last iteration: nothing to re-form
    ASSERT_EQ(sim.reports.events.size(), 1u);
    const StrategyEvent& e = sim.reports.events[0];
    ++reformed;
    adopted += e.adopted.empty() ? 0 : 1;
    EXPECT_EQ(e.event, "ring_reformed");
    EXPECT_EQ(e.lost, std::vector<int>{victim});
    std::vector<int> survivors;
    for (int w = 0; w < n; ++w)
      if (w != victim) survivors.push_back(w);
    EXPECT_EQ(e.members, survivors);
    for (std::size_t r = static_cast<std::size_t>(e.iteration) + 1; r < sim.reports.rounds.size();
         ++r) {
      EXPECT_EQ(sim.reports.rounds[r].gradients, n - 1) << "round " << r + 1;
      EXPECT_EQ(sim.reports.rounds[r].missing, 1);
    }
  }
  // The random points cover both cases: all survivors at one iteration, and some one behind.
  EXPECT_GT(reformed, 40);
  EXPECT_GT(adopted, 0);
}

TEST(AllreduceShrink, TwoLossesLeaveARingOfTwo) {
  const int n = 4;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 3};
  int runs = 0, adopted = 0, while_halting = 0;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    auto sim = shrinking(n, schedule);
    sim.start();
    const int a = static_cast<int>(seed % n), b = static_cast<int>((seed + 1 + seed / 7) % n);
    if (a == b) continue;
    const int at = static_cast<int>(seed * 29 % 300);
    // The second loss may come while the ring is still halting for the first.
    ASSERT_TRUE(run_with_losses(sim, seed, {at, at + 1 + static_cast<int>(seed % 20)}, {a, b},
                                seed % 3 == 0))
        << "seed " << seed;
    expect_survivors_agree(sim, {a, b});
    ASSERT_FALSE(sim.reports.events.empty());
    EXPECT_EQ(sim.reports.events.back().members.size(), 2u);
    std::set<int> lost;
    for (const auto& e : sim.reports.events)
      lost.insert(e.lost.begin(), e.lost.end());
    EXPECT_EQ(lost, (std::set<int>{a, b}));
    ++runs;
    for (const auto& e : sim.reports.events) {
      adopted += e.adopted.empty() ? 0 : 1;
      while_halting += e.lost.size() == 2 ? 1 : 0;  // both in one re-forming
    }
  }
  EXPECT_GT(runs, 25);
  EXPECT_GT(adopted, 0);
  EXPECT_GT(while_halting, 0) << "no second loss came while the ring was halting";
}

TEST(AllreduceShrink, ShrunkRingAveragesOverTheSurvivors) {
  // Lost before the first iteration: the run is then allreduce over the 3 survivors, whose
  // updates average their 3 gradients. Plain SGD on the toy learners: the same bits as a 3-worker
  // ring over workers 0..2 (worker 3 was lost).
  const Schedule four{.node_count = 4, .iterations_per_epoch = 3, .epochs = 2};
  auto sim = shrinking(4, four, 0.0);
  sim.start();
  ASSERT_TRUE(run_with_losses(sim, 3, {0}, {3}, false));
  const Schedule three{.node_count = 3, .iterations_per_epoch = 3, .epochs = 2};
  testing::RoleSim ref(testing::job("allreduce", 3, 0.1, 0.0), three);
  ref.start();
  ASSERT_TRUE(ref.run_random(3));
  EXPECT_EQ(sim.params, ref.params);
  ASSERT_EQ(sim.reports.events.size(), 1u);
  EXPECT_EQ(sim.reports.events[0].iteration, 0);
}

TEST(AllreduceShrink, WithoutShrinkALossEndsTheRun) {
  const Schedule schedule{.node_count = 3, .iterations_per_epoch = 2, .epochs = 1};
  testing::RoleSim sim(testing::job("allreduce", 3, 0.1), schedule);
  sim.start();
  Outbox out;
  EXPECT_FALSE(sim.server->on_worker_lost(1, out));
  EXPECT_TRUE(out.empty());
}

TEST(AllreduceShrink, HaltedMembersMoreThanOneApartAreAProtocolError) {
  const Schedule schedule{.node_count = 3, .iterations_per_epoch = 5, .epochs = 1};
  std::vector<float> params(2, 0.0f);
  testing::ManualClock clock;
  AllreduceServer server(schedule, ServerContext{.parameters = params, .clock = &clock}, true);
  Outbox out;
  server.on_start(out);
  for (int it = 1; it <= 2; ++it)
    server.on_message(0, AllreduceReport{.iteration = it}, out);
  ASSERT_TRUE(server.on_worker_lost(2, out));
  server.on_message(0, RingHalted{.generation = 1, .iteration = 2, .params = params}, out);
  EXPECT_THROW(
      server.on_message(1, RingHalted{.generation = 1, .iteration = 0, .params = params}, out),
      ProtocolError);
}

}  // namespace
}  // namespace psgd
