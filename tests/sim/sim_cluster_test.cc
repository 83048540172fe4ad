// The simulation driver with toy learners: timing, stragglers, determinism, exactness, failures.
#include "experiments/sim_cluster.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "core/error.h"
#include "core/sgd.h"
#include "psgd/ssgd.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ToyLearner;

struct Rounds final : ServerObserver {
  void on_worker(NodeId w, const WorkerReport& r) override { reports.emplace_back(w, r); }
  void on_round(const RoundStats& s) override { rounds.push_back(s); }
  std::vector<std::pair<NodeId, WorkerReport>> reports;
  std::vector<RoundStats> rounds;
};

constexpr std::size_t kSize = 6;

std::vector<float> target_of(int w) {
  std::vector<float> t(kSize);
  for (std::size_t i = 0; i < kSize; ++i)
    t[i] = static_cast<float>(w + 1) * 0.5f - static_cast<float>(i);
  return t;
}

// An ssgd job on toy learners, run by a SimCluster.
struct SsgdSim {
  SsgdSim(SimClusterOptions options, std::int64_t iterations,
          SgdOptions sgd = {.learning_rate = 0.1f, .momentum = 0.9f})
      : params(kSize, 0.25f), cluster(options) {
    const int n = options.node_count;
    server = std::make_unique<SsgdServer>(
        Schedule{.node_count = n, .iterations_per_epoch = iterations, .epochs = 1},
        ServerContext{.parameters = params,
                      .optimizer = sgd_spec(sgd),
                      .clock = &cluster.server_clock(),
                      .observer = &observer});
    for (int w = 0; w < n; ++w) {
      learners.push_back(std::make_unique<ToyLearner>(target_of(w), kSize));
      workers.push_back(std::make_unique<SsgdWorker>(
          WorkerContext{.learner = cluster.timed_learner(w, learners.back().get()),
                        .clock = &cluster.worker_clock(w)}));
      ptrs.push_back(workers.back().get());
    }
  }
  SimResult run() {
    return cluster.run(*server, ptrs, [this] { server_events.push_back(server->iteration()); });
  }

  std::vector<float> params;
  Rounds observer;
  SimCluster cluster;
  std::unique_ptr<SsgdServer> server;
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<SsgdWorker>> workers;
  std::vector<WorkerRole*> ptrs;
  std::vector<std::int64_t> server_events;
};

// A network so fast that only compute takes time.
SimClusterOptions compute_only(int n, double step_s) {
  return {.node_count = n,
          .network = {.bandwidth_bps = 1e18, .latency_s = 0},
          .compute = {.measured = false, .fixed_s = step_s}};
}

TEST(SimCluster, FixedComputeMakesEachIterationTakeTheStepTime) {
  SsgdSim sim(compute_only(3, 0.5), 4);
  const SimResult r = sim.run();
  EXPECT_TRUE(r.ok) << r.status;
  EXPECT_EQ(r.status, "completed");
  EXPECT_EQ(sim.server->iteration(), 4);
  EXPECT_NEAR(r.virtual_s, 4 * 0.5, 1e-9);
  for (const auto& [w, rep] : sim.observer.reports)
    EXPECT_DOUBLE_EQ(rep.times.compute_s, 0.5) << "worker " << w;
}

TEST(SimCluster, AStragglerFactorStretchesExactlyThatWorker) {
  SimClusterOptions o = compute_only(4, 0.5);
  o.slowdown = {1, 1, 4, 1};
  SsgdSim sim(o, 3);
  const SimResult r = sim.run();
  ASSERT_TRUE(r.ok) << r.status;
  EXPECT_NEAR(r.virtual_s, 3 * 2.0, 1e-9);  // every round waits for worker 2
  for (const auto& [w, rep] : sim.observer.reports) {
    EXPECT_DOUBLE_EQ(rep.times.compute_s, w == 2 ? 2.0 : 0.5) << "worker " << w;
    // The others wait for it: from sending at 0.5 to the parameters at 2.0 (but not before the
    // first round).
    if (rep.iteration > 0) {
      EXPECT_NEAR(rep.times.wait_s, w == 2 ? 0.0 : 1.5, 1e-9) << w;
    }
  }
}

TEST(SimCluster, MessagesTakeTheirFrameSizeOverTheBandwidthAndShareTheServerNic) {
  // 2 workers, 8 Mbit/s, 1 ms latency, no compute time, no packet headers, equal shares. One
  // round: the broadcast is two frames of P bytes sharing the server's egress; the two gradients
  // of G bytes share its ingress.
  SimClusterOptions o{
      .node_count = 2,
      .network = {.bandwidth_bps = 8e6, .latency_s = 1e-3, .mtu = 0, .unfairness = 0},
      .compute = {.measured = false, .fixed_s = 0}};
  SsgdSim sim(o, 1);
  const SimResult r = sim.run();
  ASSERT_TRUE(r.ok) << r.status;
  const double p = static_cast<double>(sim.cluster.bytes_down(0)) / 1e6;  // seconds at 8 Mbit/s
  const double g = static_cast<double>(sim.cluster.bytes_up(0)) / 1e6;
  EXPECT_EQ(sim.cluster.bytes_down(0), sim.cluster.bytes_down(1));
  // Both workers have their parameters at 2p + lat and send at once; both gradients arrive at
  // 2p + lat + 2g + lat.
  EXPECT_NEAR(r.virtual_s, 2 * p + 2 * g + 2e-3, 1e-12);
}

TEST(SimCluster, SsgdModelAfterKIterationsEqualsTheDirectComputationBitForBit) {
  constexpr int kWorkers = 3;
  constexpr int kIterations = 7;
  SimClusterOptions o = compute_only(kWorkers, 0.01);
  o.slowdown = {1, 3, 1.5};
  o.network = {.bandwidth_bps = 1e6, .latency_s = 2e-3, .jitter_s = 1e-3};
  SsgdSim sim(o, kIterations);
  ASSERT_TRUE(sim.run().ok);

  const SgdOptions sgd{.learning_rate = 0.1f, .momentum = 0.9f};
  std::vector<float> p(kSize, 0.25f);
  FlatSgd opt(sgd, kSize);
  std::vector<ToyLearner> ref;
  for (int w = 0; w < kWorkers; ++w)
    ref.emplace_back(target_of(w), kSize);
  const float inv = 1.0f / kWorkers;
  for (int k = 0; k < kIterations; ++k) {
    std::vector<float> mean(kSize, 0.0f);
    for (int w = 0; w < kWorkers; ++w) {
      const auto g = ref[w].gradient_at(p, k + 1);
      for (std::size_t i = 0; i < kSize; ++i)
        mean[i] = w == 0 ? g[i] : mean[i] + g[i];
    }
    // As the server does: the sum in worker order, then one multiplication by 1/n.
    for (auto& m : mean)
      m *= inv;
    opt.step(p, mean);
  }
  EXPECT_EQ(sim.params, p);
}

TEST(SimCluster, RepeatRunsAreIdenticalAndTheSeedMatters) {
  auto trace = [](std::uint64_t seed) {
    SimClusterOptions o{.node_count = 5,
                        .network = {.bandwidth_bps = 1e7, .latency_s = 1e-4, .jitter_s = 2e-3},
                        .compute = {.measured = false, .fixed_s = 3e-3},
                        .slowdown = {1, 2, 1, 1, 1},
                        .extra_delay_mean_s = 5e-3,
                        .seed = seed};
    o.network.seed = seed;
    SsgdSim sim(o, 6);
    const SimResult r = sim.run();
    std::vector<double> t{r.virtual_s, static_cast<double>(r.events)};
    for (const auto& [w, rep] : sim.observer.reports) {
      t.push_back(w);
      t.push_back(rep.times.compute_s);
      t.push_back(rep.times.wait_s);
      t.push_back(rep.held_s);
    }
    for (float v : sim.params)
      t.push_back(v);
    return t;
  };
  const auto a = trace(11), b = trace(11), c = trace(12);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::vector<double>(a.end() - kSize, a.end()),
            std::vector<double>(c.end() - kSize, c.end()))
      << "timing changes, the ssgd trajectory does not";
}

TEST(SimCluster, MeasuredComputeChangesTimesButNotTheSsgdTrajectory) {
  SimClusterOptions measured = compute_only(3, 0);
  measured.compute = {.measured = true};
  SsgdSim a(measured, 5), b(compute_only(3, 0.2), 5);
  const SimResult ra = a.run();
  ASSERT_TRUE(ra.ok);
  ASSERT_TRUE(b.run().ok);
  EXPECT_GT(ra.virtual_s, 0.0);
  EXPECT_LT(ra.virtual_s, 1.0);
  EXPECT_EQ(a.params, b.params);
}

TEST(SimCluster, SsgdCannotLoseAWorkerAndSaysWhy) {
  SimClusterOptions o = compute_only(3, 1.0);
  o.fail_at = {kNever, kNever, 2.5};
  SsgdSim sim(o, 100);
  const SimResult r = sim.run();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.status, "failed: worker 2 failed at 2.5 s (simulated)");
  EXPECT_DOUBLE_EQ(r.virtual_s, 2.5);
  EXPECT_EQ(sim.server->iteration(), 2);
}

// A strategy that tolerates failures and answers one worker at a time: every gradient is applied
// at once and only its sender gets new parameters (asynchronous SGD in miniature).
class EachOnItsOwn final : public ServerRole {
 public:
  EachOnItsOwn(int n, std::int64_t total) : n_(n), total_(total) {}
  void on_start(Outbox& out) override {
    for (NodeId w = 0; w < n_; ++w)
      reply(w, out);
  }
  void on_message(NodeId from, const Message& m, Outbox& out) override {
    ASSERT_TRUE(std::holds_alternative<Gradient>(m));
    ++applied_;
    per_worker_[from]++;
    if (!finished()) reply(from, out);
  }
  std::int64_t iteration() const override { return applied_; }
  bool finished() const override { return applied_ >= total_; }
  bool on_worker_lost(NodeId w, Outbox&) override {
    lost_.push_back(w);
    return true;
  }
  std::map<NodeId, int> per_worker_;
  std::vector<NodeId> lost_;

 private:
  void reply(NodeId w, Outbox& out) {
    out.push_back({w, std::make_shared<const Message>(Params{
                          .iteration = ++sent_,
                          .values = Payload{.num_elements = kSize,
                                            .bytes = std::vector<std::uint8_t>(4 * kSize)}})});
  }
  int n_;
  std::int64_t total_;
  std::int64_t applied_ = 0, sent_ = 0;
};

TEST(SimCluster, ATolerantStrategyGoesOnWithoutTheFailedWorker) {
  SimClusterOptions o = compute_only(3, 1.0);
  o.slowdown = {1, 2, 1};
  o.fail_at = {kNever, 4.5, kNever};
  SimCluster cluster(o);
  EachOnItsOwn server(3, 20);
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<SsgdWorker>> workers;
  std::vector<WorkerRole*> ptrs;
  for (int w = 0; w < 3; ++w) {
    learners.push_back(std::make_unique<ToyLearner>(target_of(w), kSize));
    workers.push_back(std::make_unique<SsgdWorker>(
        WorkerContext{.learner = cluster.timed_learner(w, learners.back().get()),
                      .clock = &cluster.worker_clock(w)}));
    ptrs.push_back(workers.back().get());
  }
  const SimResult r = cluster.run(server, ptrs);
  EXPECT_TRUE(r.ok) << r.status;
  EXPECT_EQ(server.lost_, std::vector<NodeId>{1});
  EXPECT_EQ(server.per_worker_[1], 2);  // gradients at 2 and 4; the one due at 6 never leaves
  EXPECT_EQ(server.per_worker_[0] + server.per_worker_[2], 18);
  EXPECT_NEAR(r.virtual_s, 9.0, 1e-9);  // workers 0 and 2 deliver 2 a second from t = 1
}

TEST(SimCluster, AStrategyThatWaitsForeverIsReportedAsStalled) {
  // Both workers fail: the tolerant strategy carries on, but nobody is left to send.
  SimClusterOptions o = compute_only(2, 1.0);
  o.fail_at = {2.5, 1.5};
  SimCluster cluster2(o);
  EachOnItsOwn tolerant(2, 1000);
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<SsgdWorker>> workers;
  std::vector<WorkerRole*> ptrs;
  for (int w = 0; w < 2; ++w) {
    learners.push_back(std::make_unique<ToyLearner>(target_of(w), kSize));
    workers.push_back(std::make_unique<SsgdWorker>(
        WorkerContext{.learner = cluster2.timed_learner(w, learners.back().get()),
                      .clock = &cluster2.worker_clock(w)}));
    ptrs.push_back(workers.back().get());
  }
  const SimResult r = cluster2.run(tolerant, ptrs);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.status.find("stalled"), std::string::npos) << r.status;
}

}  // namespace
}  // namespace psgd
