// asgd, ssp, local_sgd and ssgd --wait_for, driven message by message (tests/psgd/role_sim.h).
// (Over 400 lines: the strategies' tests share RoleSim and read best side by side.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/error.h"
#include "core/straggler.h"
#include "psgd/local_sgd.h"
#include "psgd/ssp.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

using testing::job;
using testing::RoleSim;

void expect_near(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(a[i], b[i], tol) << i;
}

// Lets every worker that has parameters compute once (deliver, compute), without the server.
void all_workers_compute(RoleSim& sim) {
  for (std::size_t w = 0; w < sim.workers.size(); ++w) {
    sim.run({1, static_cast<int>(w)});
    sim.run({2, static_cast<int>(w)});
  }
}

// --- asgd

TEST(Asgd, AppliesEachGradientOnArrivalInArrivalOrderAndRecordsStaleness) {
  const int n = 3;
  const float lr = 0.3f;
  RoleSim sim(job("asgd", n, lr), {.node_count = n, .iterations_per_epoch = 30, .epochs = 1});
  sim.start();
  all_workers_compute(sim);  // all three computed on version 0

  // Reference: the gradients at the initial parameters, applied in arrival order 2, 0, 1 with
  // weight 1/n each.
  std::vector<float> ref = sim.initial;
  const std::vector<int> order{2, 0, 1};
  for (int w : order) {
    const auto g = sim.learners[w]->gradient_at(sim.initial, 1);
    for (std::size_t i = 0; i < ref.size(); ++i)
      ref[i] -= lr / n * g[i];
  }
  for (std::size_t k = 0; k < order.size(); ++k) {
    sim.run({0, order[k]});
    EXPECT_EQ(sim.server->iteration(), static_cast<std::int64_t>(k + 1));
    // The reply goes to the sender alone, with the current version.
    ASSERT_EQ(sim.waiting(order[k]), 1u);
    EXPECT_EQ(std::get<Params>(*sim.next_for(order[k])).iteration,
              static_cast<std::int64_t>(k + 1));
  }
  expect_near(sim.params, ref, 1e-6f);
  ASSERT_EQ(sim.reports.workers.size(), 3u);
  for (std::size_t k = 0; k < order.size(); ++k) {
    EXPECT_EQ(sim.reports.workers[k].first, order[k]);
    EXPECT_EQ(sim.reports.workers[k].second.staleness, static_cast<std::int64_t>(k));
  }
  EXPECT_EQ(sim.reports.rounds.size(), 3u);

  // Worker 2 computes on version 1 and arrives at version 3: staleness 2.
  sim.run({1, 2});
  sim.run({2, 2});
  sim.run({0, 2});
  EXPECT_EQ(sim.reports.workers.back().second.staleness, 2);
}

TEST(Asgd, StalenessAwareRateDampsOnlyGradientsStalerThanTheWorkersTakingTurns) {
  // 1 / max(n, staleness + 1): n - 1 is the staleness of n workers taking turns (weight 1/n, as
  // without the option); a staler gradient is damped in proportion, a fresher one never boosted.
  EXPECT_FLOAT_EQ(staleness_weight(3, 0), 1.0f / 3);
  EXPECT_FLOAT_EQ(staleness_weight(3, 2), 1.0f / 3);
  EXPECT_FLOAT_EQ(staleness_weight(3, 3), 1.0f / 4);
  EXPECT_FLOAT_EQ(staleness_weight(4, 11), 1.0f / 12);

  const int n = 3;
  const float lr = 0.5f;
  StrategyJob spec = job("asgd", n, lr);
  spec.staleness_lr = true;
  RoleSim sim(spec, {.node_count = n, .iterations_per_epoch = 10, .epochs = 1});
  sim.start();
  all_workers_compute(sim);  // all on version 0
  std::vector<float> before = sim.params;
  sim.run({0, 0});  // staleness 0: weight 1/n
  const auto g0 = sim.learners[0]->gradient_at(sim.initial, 1);
  for (std::size_t i = 0; i < before.size(); ++i)
    EXPECT_NEAR(sim.params[i], before[i] - lr / n * g0[i], 1e-6f) << i;
  sim.run({0, 1});                           // staleness 1, version 2
  for (int round = 0; round < 2; ++round) {  // workers 0 and 1 again: versions 3, 4
    for (int w : {0, 1}) {
      sim.run({1, w});
      sim.run({2, w});
      sim.run({0, w});
    }
  }
  before = sim.params;
  sim.run({0, 2});  // computed on version 0, arrives at version 6: staleness 6, weight 1/7
  EXPECT_EQ(sim.reports.workers.back().second.staleness, 6);
  const auto g2 = sim.learners[2]->gradient_at(sim.initial, 1);
  for (std::size_t i = 0; i < before.size(); ++i)
    EXPECT_NEAR(sim.params[i], before[i] - lr / 7 * g2[i], 1e-6f) << i;
}

TEST(Asgd, RandomArrivalOrdersFinishAndCountEveryUpdate) {
  RoleSim sim(job("asgd", 4, 0.05, 0.9),
              {.node_count = 4, .iterations_per_epoch = 20, .epochs = 2});
  sim.start();
  ASSERT_TRUE(sim.run_random(7));
  EXPECT_EQ(sim.server->iteration(), 40);
  EXPECT_EQ(sim.reports.rounds.size(), 40u);
  std::int64_t max_staleness = 0;
  for (const auto& [w, r] : sim.reports.workers)
    max_staleness = std::max(max_staleness, r.staleness);
  EXPECT_GT(max_staleness, 0);
}

// An asgd epoch is N / batch gradients from whoever sends them: with one worker far slower than
// the others, the run ends after exactly the schedule's updates, the fast workers having sent
// most of them, and the slow worker is never waited for.
TEST(Asgd, EpochEndsAfterItsGradientsWhoeverSentThemWithASlowWorker) {
  const int n = 4;
  StrategyJob spec = job("asgd", n, 0.05, 0.9);
  spec.batch_size = 10;
  spec.epochs = 2;
  const Schedule schedule = make_schedule(spec, 1000);  // 1000 samples, 4 x 10 per round
  ASSERT_EQ(schedule.iterations_per_epoch, 100);        // 25 ssgd rounds x 4: 1000 / 10
  RoleSim sim(spec, schedule);
  sim.start();
  // Worker 3 is 4x slower: it may start a computation only once each other worker has done 4
  // times as many; otherwise events are chosen at random.
  std::vector<int> computed(n, 0);
  std::mt19937_64 rng(5);
  int steps = 0;
  while (!sim.server->finished() && steps++ < 100000) {
    const auto ev = sim.events();
    ASSERT_FALSE(ev.empty()) << "asgd stalled";
    const int fastest_min = std::min({computed[0], computed[1], computed[2]});
    std::vector<RoleSim::Event> allowed;
    for (const auto& e : ev)
      if (e.kind != 2 || e.worker != 3 || 4 * computed[3] <= fastest_min) allowed.push_back(e);
    if (allowed.empty()) allowed = ev;
    const RoleSim::Event e = allowed[rng() % allowed.size()];
    if (e.kind == 2) ++computed[static_cast<std::size_t>(e.worker)];
    sim.run(e);
  }
  ASSERT_TRUE(sim.server->finished());
  EXPECT_EQ(sim.server->iteration(), 200);
  std::vector<int> applied(n, 0);
  for (const auto& [w, r] : sim.reports.workers)
    if (!r.dropped) ++applied[static_cast<std::size_t>(w)];
  EXPECT_EQ(applied[0] + applied[1] + applied[2] + applied[3], 200);
  EXPECT_GT(applied[3], 0);
  for (int w = 0; w < 3; ++w) {
    EXPECT_GT(applied[w], 2 * applied[3]) << w;
    EXPECT_GT(applied[w], 50) << "a fast worker takes more than its quarter";
  }
}

// --- ssp

TEST(Ssp, NoWorkerEverRunsMoreThanStalenessAheadOfTheSlowest) {
  for (int s : {0, 1, 3}) {
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
      StrategyJob spec = job("ssp", 4, 0.05);
      spec.staleness = s;
      RoleSim sim(spec, {.node_count = 4, .iterations_per_epoch = 40, .epochs = 1});
      int violations = 0;
      std::int64_t max_gap = 0;
      sim.on_compute_start = [&](int w) {
        // The worker starts a gradient for its clock `sent[w]` (gradients completed so far).
        const std::int64_t slowest = *std::min_element(sim.sent.begin(), sim.sent.end());
        max_gap = std::max(max_gap, sim.sent[w] - slowest);
        if (sim.sent[w] - slowest > s) ++violations;
      };
      sim.start();
      // A biased order makes worker 3 a straggler: its events are rarely chosen.
      std::mt19937_64 rng(seed);
      int steps = 0;
      while (!sim.server->finished() && steps++ < 100000) {
        auto ev = sim.events();
        ASSERT_FALSE(ev.empty()) << "deadlock with s=" << s << " seed " << seed;
        std::vector<RoleSim::Event> fast;
        for (auto& e : ev)
          if (e.worker != 3) fast.push_back(e);
        const auto& pool = (!fast.empty() && rng() % 5 != 0) ? fast : ev;
        sim.run(pool[rng() % pool.size()]);
      }
      ASSERT_TRUE(sim.server->finished());
      EXPECT_EQ(violations, 0) << "s=" << s << " seed " << seed;
      EXPECT_EQ(max_gap, s) << "the bound is reached, so the test does exercise it";
    }
  }
}

TEST(Ssp, StalenessZeroFollowsSsgdsTrajectory) {
  const int n = 3;
  const Schedule ssgd_schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 2};
  RoleSim ssgd(job("ssgd", n, 0.05, 0.0, 0.0), ssgd_schedule);
  ssgd.start();
  ASSERT_TRUE(ssgd.run_random(3));

  StrategyJob spec = job("ssp", n, 0.05, 0.0, 0.0);
  spec.staleness = 0;
  RoleSim ssp(spec, {.node_count = n, .iterations_per_epoch = 4 * n, .epochs = 2});
  ssp.start();
  ASSERT_TRUE(ssp.run_random(11));
  expect_near(ssp.params, ssgd.params, 1e-5f);
  EXPECT_NE(ssp.params, ssp.initial);
}

// With momentum on the workers (the default for ssp) lock-step ssp is ssgd with momentum, step
// for step; with momentum on the server's per-update SGD it is not.
TEST(Ssp, StalenessZeroFollowsSsgdsTrajectoryWithMomentumOnTheWorkers) {
  const int n = 3;
  const Schedule ssgd_schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 2};
  RoleSim ssgd(job("ssgd", n, 0.02, 0.9), ssgd_schedule);
  ssgd.start();
  ASSERT_TRUE(ssgd.run_random(3));

  const Schedule ssp_schedule{.node_count = n, .iterations_per_epoch = 4 * n, .epochs = 2};
  StrategyJob spec = job("ssp", n, 0.02, 0.9);
  spec.staleness = 0;
  RoleSim ssp(spec, ssp_schedule);  // --momentum_at auto: worker
  ssp.start();
  ASSERT_TRUE(ssp.run_random(11));
  expect_near(ssp.params, ssgd.params, 1e-5f);
  EXPECT_NE(ssp.params, ssp.initial);

  spec.momentum_at = "server";
  RoleSim server_momentum(spec, ssp_schedule);
  server_momentum.start();
  ASSERT_TRUE(server_momentum.run_random(11));
  float gap = 0;
  for (std::size_t i = 0; i < RoleSim::kSize; ++i)
    gap = std::max(gap, std::fabs(server_momentum.params[i] - ssgd.params[i]));
  EXPECT_GT(gap, 1e-3f);
}

TEST(Ssp, LargeStalenessNeverHoldsAWorker) {
  StrategyJob spec = job("ssp", 3, 0.05);
  spec.staleness = 1000;
  RoleSim sim(spec, {.node_count = 3, .iterations_per_epoch = 30, .epochs = 1});
  sim.start();
  // Worker 0 alone runs 20 gradients: as in asgd it always gets an immediate reply.
  for (int k = 0; k < 20; ++k) {
    sim.run({1, 0});
    sim.run({2, 0});
    sim.run({0, 0});
    ASSERT_EQ(sim.waiting(0), 1u) << k;
  }
  for (const auto& [w, r] : sim.reports.workers)
    EXPECT_EQ(r.held_s, 0.0);
}

// --- local_sgd

TEST(LocalSgd, OneLocalStepEqualsSsgdStepForStepWithMomentum) {
  const int n = 3;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 3, .epochs = 2};
  StrategyJob s = job("ssgd", n, 0.02, 0.9, 0.01);
  RoleSim ssgd(s, schedule);
  s.psgd = "local_sgd";
  s.sync_period = 1;
  RoleSim local(s, schedule);
  ssgd.start();
  local.start();
  // Round by round: every worker computes, then the server hears them all.
  for (int round = 0; round < 6; ++round) {
    for (RoleSim* sim : {&ssgd, &local}) {
      all_workers_compute(*sim);
      for (int w = n - 1; w >= 0; --w)
        sim->run({0, w});
    }
    expect_near(local.params, ssgd.params, 1e-5f);
  }
  EXPECT_TRUE(local.server->finished());
  EXPECT_TRUE(ssgd.server->finished());
}

TEST(LocalSgd, TakesHLocalStepsAndNeverCrossesAnEpochEnd) {
  const int n = 2;
  StrategyJob s = job("local_sgd", n, 0.1);
  s.sync_period = 3;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 2};
  RoleSim sim(s, schedule);
  sim.start();
  std::vector<std::int64_t> iterations;
  while (!sim.server->finished()) {
    for (int w = 0; w < n; ++w) {
      sim.run({1, w});
      int computes = 0;
      while (sim.computing[w]) {
        sim.run({2, w});
        ++computes;
      }
      EXPECT_EQ(computes, local_steps_at(schedule, {.sync_period = 3}, sim.server->iteration()));
    }
    for (int w = 0; w < n; ++w)
      sim.run({0, w});
    iterations.push_back(sim.server->iteration());
  }
  EXPECT_EQ(iterations, (std::vector<std::int64_t>{3, 4, 7, 8}));
  for (const auto& [w, r] : sim.reports.workers)
    EXPECT_EQ(r.local_steps == 3 || r.local_steps == 1, true);

  // The average is the sample-weighted mean of the local models: with one worker's data alone
  // (worker 0's learner), the model moves toward its target.
  EXPECT_NE(sim.params, sim.initial);
}

TEST(LocalSgd, PostLocalUsesOneStepForTheFirstEpochs) {
  const Schedule schedule{.node_count = 2, .iterations_per_epoch = 5, .epochs = 3};
  const LocalSgdOptions o{.sync_period = 4, .local_after_epochs = 1};
  EXPECT_EQ(local_steps_at(schedule, o, 0), 1);
  EXPECT_EQ(local_steps_at(schedule, o, 4), 1);
  EXPECT_EQ(local_steps_at(schedule, o, 5), 4);
  EXPECT_EQ(local_steps_at(schedule, o, 9), 1);  // epoch end
  EXPECT_EQ(local_steps_at(schedule, o, 10), 4);
}

// --- ssgd --wait_for

TEST(WaitFor, RoundsCloseWithExactlyKGradientsAndLateOnesAreDroppedAndResynchronised) {
  const int n = 4;
  const float lr = 0.1f;
  StrategyJob spec = job("ssgd", n, lr);
  spec.wait_for = 2;
  RoleSim sim(spec, {.node_count = n, .iterations_per_epoch = 10, .epochs = 1});
  sim.start();
  all_workers_compute(sim);
  sim.run({0, 1});
  EXPECT_EQ(sim.server->iteration(), 0);
  sim.run({0, 3});
  EXPECT_EQ(sim.server->iteration(), 1);  // closed with the first two
  ASSERT_EQ(sim.reports.rounds.size(), 1u);
  EXPECT_EQ(sim.reports.rounds[0].gradients, 2);
  EXPECT_EQ(sim.reports.rounds[0].missing, 2);
  // The mean of the two, not of four.
  std::vector<float> ref = sim.initial;
  for (int w : {1, 3}) {
    const auto g = sim.learners[w]->gradient_at(sim.initial, 1);
    for (std::size_t i = 0; i < ref.size(); ++i)
      ref[i] -= lr * g[i] / 2;
  }
  expect_near(sim.params, ref, 1e-6f);
  // Only the contributors were answered.
  EXPECT_EQ(sim.waiting(1), 1u);
  EXPECT_EQ(sim.waiting(3), 1u);
  EXPECT_TRUE((sim.waiting(0) == 0));
  EXPECT_TRUE((sim.waiting(2) == 0));

  // Worker 0's gradient of iteration 0 is late: dropped, and worker 0 gets the current model.
  const std::vector<float> before = sim.params;
  sim.run({0, 0});
  EXPECT_EQ(sim.params, before) << "a late gradient must not touch the model";
  EXPECT_TRUE(sim.reports.workers.back().second.dropped);
  EXPECT_EQ(sim.reports.workers.back().first, 0);
  ASSERT_EQ(sim.waiting(0), 1u);
  EXPECT_EQ(std::get<Params>(*sim.next_for(0)).iteration, 1);
  // Resynchronised, its next gradient counts in round 1.
  sim.run({1, 0});
  sim.run({2, 0});
  sim.run({0, 0});
  sim.run({1, 1});
  sim.run({2, 1});
  sim.run({0, 1});
  EXPECT_EQ(sim.server->iteration(), 2);
  EXPECT_EQ(sim.reports.rounds.back().gradients, 2);
}

TEST(WaitFor, RandomOrdersNeverStallAndEveryRoundHasExactlyK) {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    StrategyJob spec = job("ssgd", 5, 0.05, 0.9);
    spec.wait_for = 3;
    RoleSim sim(spec, {.node_count = 5, .iterations_per_epoch = 15, .epochs = 2});
    sim.start();
    ASSERT_TRUE(sim.run_random(seed)) << "stalled, seed " << seed;
    EXPECT_EQ(sim.reports.rounds.size(), 30u);
    for (const auto& r : sim.reports.rounds) {
      EXPECT_EQ(r.gradients, 3);
      EXPECT_EQ(r.missing, 2);
    }
  }
}

TEST(WaitFor, WithoutBackupWorkersAStaleGradientIsStillAProtocolError) {
  RoleSim sim(job("ssgd", 2, 0.1), {.node_count = 2, .iterations_per_epoch = 5, .epochs = 1});
  sim.start();
  all_workers_compute(sim);
  auto g = std::get<Gradient>(*sim.next_from(0));
  g.iteration = 3;
  Outbox out;
  EXPECT_THROW(sim.server->on_message(0, g, out), ProtocolError);
}

// --- injected slowness

struct TickingLearner final : Learner {
  explicit TickingLearner(testing::ManualClock& c) : clock(c) {}
  std::span<float> parameters() override { return p; }
  std::span<const float> gradients() const override { return p; }
  StepStats compute_gradient() override {
    clock.t += 0.5;
    if (on_step) on_step();
    return {.loss = 1, .samples = samples};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return {}; }
  testing::ManualClock& clock;
  std::vector<float> p{1, 2};
  std::function<void()> on_step;  // e.g. advances a CPU-time clock
  std::int64_t samples = 2;
};

TEST(Straggler, SlowdownPausesFMinusOneTimesTheComputeTime) {
  testing::ManualClock clock;
  TickingLearner inner(clock);
  std::vector<double> pauses;
  StragglerLearner slow(inner, {.slowdown = 4}, clock, [&](double s) {
    pauses.push_back(s);
    clock.t += s;  // a simulator advances virtual time instead of sleeping
  });
  EXPECT_EQ(slow.compute_gradient().samples, 2);
  EXPECT_EQ(pauses, std::vector<double>{1.5});
  EXPECT_DOUBLE_EQ(clock.t, 2.0);  // 4 x 0.5 s
}

// With a work clock (a real client's CPU time), the stretched time is the step's own work: time
// the step waited for a core is not multiplied, and the wall time caps the CPU time of several
// threads.
TEST(Straggler, SlowdownStretchesTheStepsWorkNotItsWaitForACore) {
  testing::ManualClock clock;
  testing::ManualClock work;
  TickingLearner inner(clock);  // every step takes 0.5 s of wall time
  std::vector<double> pauses;
  StragglerLearner slow(
      inner, {.slowdown = 3}, clock, [&](double s) { pauses.push_back(s); }, &work);
  slow.compute_gradient();                 // 0 s of work: nothing is stretched
  inner.on_step = [&] { work.t += 0.2; };  // 0.2 s of CPU within its 0.5 s
  slow.compute_gradient();
  ASSERT_EQ(pauses.size(), 1u);
  EXPECT_DOUBLE_EQ(pauses[0], 2 * 0.2);

  testing::ManualClock clock2;
  testing::ManualClock work2;
  TickingLearner threaded(clock2);
  threaded.on_step = [&] { work2.t += 1.5; };  // three threads busy: 1.5 s of CPU in 0.5 s
  StragglerLearner slow2(
      threaded, {.slowdown = 3}, clock2, [&](double s) { pauses.push_back(s); }, &work2);
  slow2.compute_gradient();
  ASSERT_EQ(pauses.size(), 2u);
  EXPECT_DOUBLE_EQ(pauses[1], 2 * 0.5);
}

// A step's CPU time grows when other workers compute beside it on a shared host; the stretch
// follows the lowest per-sample time of the recent steps, so the slow worker is not slowed down
// by how busy the others keep the host, and a smaller batch is stretched in proportion.
TEST(Straggler, SlowdownFollowsTheUncontendedPerSampleTime) {
  testing::ManualClock clock;
  testing::ManualClock work;
  TickingLearner inner(clock);  // 2 samples, 0.5 s of wall time per step
  std::vector<double> pauses;
  StragglerLearner slow(
      inner, {.slowdown = 4}, clock, [&](double s) { pauses.push_back(s); }, &work);
  double cpu = 0.2;
  inner.on_step = [&] { work.t += cpu; };
  slow.compute_gradient();  // uncontended: 0.1 s per sample
  cpu = 0.3;                // the same batch while the others compute
  for (std::size_t i = 1; i < StragglerLearner::kWindow; ++i)
    slow.compute_gradient();
  for (double p : pauses)
    EXPECT_NEAR(p, 3 * 0.2, 1e-9);
  inner.samples = 1;  // the epoch's last, smaller batch
  cpu = 0.1;
  slow.compute_gradient();
  EXPECT_NEAR(pauses.back(), 3 * 0.1, 1e-9);
  // Once the uncontended steps have left the window, the recent steps' time counts.
  inner.samples = 2;
  cpu = 0.3;
  for (std::size_t i = 0; i < StragglerLearner::kWindow; ++i)
    slow.compute_gradient();
  EXPECT_NEAR(pauses.back(), 3 * 0.3, 1e-9);
}

TEST(Straggler, DelayDistributionsAreSeededAndParsed) {
  EXPECT_TRUE(DelayModel::parse("none").none());
  EXPECT_DOUBLE_EQ(DelayModel::parse("fixed:0.005").a, 0.005);
  EXPECT_THROW(DelayModel::parse("exp:-1"), ConfigError);
  EXPECT_THROW(DelayModel::parse("gauss:1"), ConfigError);
  EXPECT_THROW(DelayModel::parse("uniform:2:1"), ConfigError);
  const DelayModel exp = DelayModel::parse("exp:0.01");
  Rng a(5), b(5);
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    const double x = exp.sample(a);
    EXPECT_EQ(x, exp.sample(b));
    EXPECT_GE(x, 0);
    sum += x;
  }
  EXPECT_NEAR(sum / 20000, 0.01, 0.0005);

  testing::ManualClock clock;
  TickingLearner inner(clock);
  double paused = 0;
  StragglerLearner delayed(inner, {.delay = DelayModel::parse("fixed:0.25")}, clock,
                           [&](double s) { paused += s; });
  delayed.compute_gradient();
  delayed.compute_gradient();
  EXPECT_DOUBLE_EQ(paused, 0.5);
}

// --- lost workers (ServerRole::on_worker_lost)

// Forgets everything of worker `lost`, tells the server, and runs the others (random order) to
// the end; returns whether the server carried on and finished.
bool lose_and_finish(RoleSim& sim, int lost, std::uint64_t seed) {
  const auto w = static_cast<std::size_t>(lost);
  sim.drop_at_server(w);
  sim.drop_for(w);
  sim.computing[w] = false;
  Outbox out;
  if (!sim.server->on_worker_lost(lost, out)) return false;
  sim.route_from_server(out);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 100000 && !sim.server->finished(); ++i) {
    sim.drop_for(w);  // what the server still sends it goes nowhere
    std::vector<RoleSim::Event> ev;
    for (const auto& e : sim.events())
      if (e.worker != lost) ev.push_back(e);
    if (ev.empty()) return false;
    sim.run(ev[rng() % ev.size()]);
  }
  return sim.server->finished();
}

TEST(WorkerLost, AsgdAndLocalSgdCarryOnWithTheOthers) {
  for (const std::string psgd : {"asgd", "local_sgd"}) {
    for (std::uint64_t seed = 1; seed <= 5; ++seed) {
      StrategyJob spec = job(psgd, 3, 0.1);
      spec.sync_period = 2;
      RoleSim sim(spec, {.node_count = 3, .iterations_per_epoch = 6, .epochs = 2});
      sim.start();
      (void)sim.run_random(seed, 7);  // a few events: someone may be mid-round
      if (sim.server->finished()) continue;
      EXPECT_TRUE(lose_and_finish(sim, 2, seed)) << psgd << " seed " << seed;
    }
  }
}

TEST(WorkerLost, LocalSgdClosesARoundThatWaitedOnlyForTheLostWorker) {
  StrategyJob spec = job("local_sgd", 3, 0.1);
  spec.sync_period = 1;
  RoleSim sim(spec, {.node_count = 3, .iterations_per_epoch = 4, .epochs = 1});
  sim.start();
  all_workers_compute(sim);
  sim.run({0, 0});
  sim.run({0, 1});
  EXPECT_EQ(sim.server->iteration(), 0);
  Outbox out;
  ASSERT_TRUE(sim.server->on_worker_lost(2, out));
  EXPECT_EQ(sim.server->iteration(), 1) << "closed with workers 0 and 1";
  ASSERT_EQ(sim.reports.rounds.size(), 1u);
  EXPECT_EQ(sim.reports.rounds[0].gradients, 2);
}

TEST(WorkerLost, SsgdGoesOnOnlyWhileWaitForWorkersRemain) {
  RoleSim all(job("ssgd", 3, 0.1), {.node_count = 3, .iterations_per_epoch = 4, .epochs = 1});
  all.start();
  Outbox out;
  EXPECT_FALSE(all.server->on_worker_lost(1, out)) << "every round needs every worker";

  StrategyJob spec = job("ssgd", 3, 0.1);
  spec.wait_for = 2;
  RoleSim backup(spec, {.node_count = 3, .iterations_per_epoch = 4, .epochs = 2});
  backup.start();
  EXPECT_TRUE(lose_and_finish(backup, 2, 3));
  EXPECT_FALSE(backup.server->on_worker_lost(1, out)) << "one worker left, rounds need two";
}

// A replacement for lost worker 2 (a new client with a fresh role and learner) rejoins: the ssgd
// server counts it again (a second loss is then survivable), sends it parameters, and its
// gradients count.
TEST(WorkerLost, SsgdReplacementRejoinsAndCountsAgain) {
  StrategyJob spec = job("ssgd", 3, 0.1);
  spec.wait_for = 2;
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    RoleSim sim(spec, {.node_count = 3, .iterations_per_epoch = 6, .epochs = 2});
    sim.start();
    (void)sim.run_random(seed, 9);
    if (sim.server->finished()) continue;
    const bool gradient_in_round = (sim.waiting_at_server(2) > 0);
    if (gradient_in_round) sim.run({0, 2});  // it arrives, then the worker dies
    sim.drop_for(2);
    sim.computing[2] = false;
    Outbox out;
    ASSERT_TRUE(sim.server->on_worker_lost(2, out));
    sim.route_from_server(out);
    sim.drop_for(2);
    // The replacement: same slot, a fresh learner and role.
    sim.learners[2] = std::make_unique<testing::ToyLearner>(
        std::vector<float>(RoleSim::kSize, 3.0f), RoleSim::kSize);
    sim.workers[2] = make_worker_role(
        spec, sim.schedule,
        WorkerContext{.learner = sim.learners[2].get(), .clock = &sim.clock, .id = 2});
    out.clear();
    ASSERT_TRUE(sim.server->on_worker_rejoined(2, out)) << seed;
    sim.route_from_server(out);
    const std::int64_t sent_before = sim.sent[2];
    EXPECT_TRUE(sim.server->on_worker_lost(1, out)) << "workers 0 and 2 still close rounds";
    sim.drop_for(1);
    sim.drop_at_server(1);
    sim.computing[1] = false;
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 100000 && !sim.server->finished(); ++i) {
      sim.drop_for(1);
      std::vector<RoleSim::Event> ev;
      for (const auto& e : sim.events())
        if (e.worker != 1) ev.push_back(e);
      ASSERT_FALSE(ev.empty()) << "seed " << seed << ": stuck";
      sim.run(ev[rng() % ev.size()]);
    }
    EXPECT_TRUE(sim.server->finished()) << seed;
    EXPECT_GT(sim.sent[2], sent_before) << "the replacement's gradients count, seed " << seed;
  }
}

// The lost worker's gradient is in the open round when its replacement rejoins: the replacement
// gets nothing at once (a second gradient for that round would be a duplicate) and is sent the
// parameters the round produces, with the others.
TEST(WorkerLost, SsgdReplacementOfAWorkerWhoseGradientIsInTheOpenRound) {
  StrategyJob spec = job("ssgd", 3, 0.1);
  spec.wait_for = 2;
  RoleSim sim(spec, {.node_count = 3, .iterations_per_epoch = 4, .epochs = 1});
  sim.start();
  for (int w = 0; w < 3; ++w)
    sim.run({1, w});  // every worker installs the parameters and computes
  sim.run({2, 2});
  sim.run({0, 2});  // worker 2's gradient is in round 0; then it dies
  sim.drop_for(2);
  sim.computing[2] = false;
  Outbox out;
  ASSERT_TRUE(sim.server->on_worker_lost(2, out));
  sim.learners[2] = std::make_unique<testing::ToyLearner>(std::vector<float>(RoleSim::kSize, 3.0f),
                                                          RoleSim::kSize);
  sim.workers[2] = make_worker_role(
      spec, sim.schedule,
      WorkerContext{.learner = sim.learners[2].get(), .clock = &sim.clock, .id = 2});
  out.clear();
  ASSERT_TRUE(sim.server->on_worker_rejoined(2, out));
  EXPECT_TRUE(out.empty()) << "its predecessor's gradient is still in the round";
  sim.run({2, 0});
  sim.run({0, 0});  // the round closes with workers 0 and 2
  EXPECT_EQ(sim.server->iteration(), 1);
  ASSERT_EQ(sim.waiting(2), 1u) << "the replacement gets the new parameters";
  EXPECT_TRUE(sim.run_random(5));
}

TEST(WorkerLost, AsgdReplacementRejoins) {
  RoleSim sim(job("asgd", 2, 0.1), {.node_count = 2, .iterations_per_epoch = 8, .epochs = 1});
  sim.start();
  (void)sim.run_random(3, 6);
  sim.drop_for(1);
  sim.drop_at_server(1);
  sim.computing[1] = false;
  Outbox out;
  ASSERT_TRUE(sim.server->on_worker_lost(1, out));
  const std::int64_t batches = sim.server->worker_batches(1);
  EXPECT_GE(batches, 0);
  sim.learners[1] = std::make_unique<testing::ToyLearner>(std::vector<float>(RoleSim::kSize, 3.0f),
                                                          RoleSim::kSize);
  sim.workers[1] = make_worker_role(
      job("asgd", 2, 0.1), sim.schedule,
      WorkerContext{.learner = sim.learners[1].get(), .clock = &sim.clock, .id = 1});
  ASSERT_TRUE(sim.server->on_worker_rejoined(1, out));
  ASSERT_EQ(out.size(), 1u);
  sim.route_from_server(out);
  EXPECT_TRUE(sim.run_random(4));
  EXPECT_GT(sim.server->worker_batches(1), batches) << "the replacement's gradients count";
}

TEST(WorkerLost, StrategiesWithoutReplacementsRefuseThem) {
  for (const std::string psgd : {"local_sgd"}) {
    RoleSim sim(job(psgd, 2, 0.1), {.node_count = 2, .iterations_per_epoch = 4, .epochs = 1});
    sim.start();
    Outbox out;
    ASSERT_TRUE(sim.server->on_worker_lost(1, out));
    EXPECT_FALSE(sim.server->on_worker_rejoined(1, out)) << psgd;
  }
}

}  // namespace
}  // namespace psgd
