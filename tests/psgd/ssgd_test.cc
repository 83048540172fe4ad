#include "psgd/ssgd.h"

#include <gtest/gtest.h>

#include <memory>

#include "core/error.h"
#include "core/sgd.h"
#include "psgd/factory.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;
using testing::ToyLearner;

struct Recorder final : ServerObserver {
  void on_worker(NodeId w, const WorkerReport& r) { reports.emplace_back(w, r); }
  void on_round(const RoundStats& s) { rounds.push_back(s); }
  std::vector<std::pair<NodeId, WorkerReport>> reports;
  std::vector<RoundStats> rounds;
};

// n workers and a server, wired by hand: every message is delivered in the order given.
struct Harness {
  static constexpr std::size_t kSize = 5;

  Harness(int n, SgdOptions sgd, int epochs = 1, std::int64_t ipe = 3)
      : initial(kSize), params(kSize) {
    for (std::size_t i = 0; i < kSize; ++i)
      initial[i] = params[i] = 0.1f * i - 0.2f;
    server = std::make_unique<SsgdServer>(
        Schedule{.node_count = n, .iterations_per_epoch = ipe, .epochs = epochs},
        ServerContext{.parameters = params,
                      .optimizer = sgd_spec(sgd),
                      .clock = &clock,
                      .observer = &recorder});
    for (int w = 0; w < n; ++w) {
      std::vector<float> target(kSize);
      for (std::size_t i = 0; i < kSize; ++i)
        target[i] = static_cast<float>(w + 1) * (i + 1);
      learners.push_back(std::make_unique<ToyLearner>(target, kSize));
      workers.push_back(std::make_unique<SsgdWorker>(
          WorkerContext{.learner = learners.back().get(), .clock = &clock}));
    }
  }

  // Delivers the server's messages, lets every worker compute, and returns their gradients.
  std::vector<Envelope> deliver_to_workers(const Outbox& from_server) {
    std::vector<Envelope> up;
    for (const auto& env : from_server) {
      Outbox out;
      auto action = workers[env.to]->on_message(*env.message, out);
      EXPECT_TRUE(action.compute);
      action = workers[env.to]->compute_step(out);
      EXPECT_FALSE(action.compute);
      for (auto& e : out) {
        EXPECT_EQ(e.to, kServer);
        up.push_back({env.to, e.message});  // remember the sender in `to`
      }
    }
    return up;
  }

  ManualClock clock;
  Recorder recorder;
  std::vector<float> initial;
  std::vector<float> params;
  std::unique_ptr<SsgdServer> server;
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<SsgdWorker>> workers;
};

TEST(Ssgd, StartBroadcastsTheSameParametersToEveryWorker) {
  Harness h(3, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  ASSERT_EQ(out.size(), 3u);
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(out[w].to, w);
    EXPECT_EQ(out[w].message, out[0].message);  // one shared message, encoded once
  }
  h.deliver_to_workers(out);
  for (const auto& l : h.learners) {
    EXPECT_EQ(std::vector<float>(l->parameters().begin(), l->parameters().end()), h.initial);
  }
}

TEST(Ssgd, ServerUpdateEqualsOneSgdStepOnTheMeanGradient) {
  const int n = 4;
  const float lr = 0.05f;
  Harness h(n, {.learning_rate = lr});
  Outbox out;
  h.server->on_start(out);
  auto up = h.deliver_to_workers(out);
  ASSERT_EQ(up.size(), static_cast<std::size_t>(n));

  std::vector<float> mean(Harness::kSize, 0.0f);
  for (int w = 0; w < n; ++w) {
    auto g = h.learners[w]->gradient_at(h.initial, 1);
    for (std::size_t i = 0; i < mean.size(); ++i)
      mean[i] += g[i] / n;
  }
  Outbox down;
  for (std::size_t k = 0; k < up.size(); ++k) {
    h.server->on_message(up[k].to, *up[k].message, down);
    EXPECT_EQ(down.empty(), k + 1 < up.size()) << "replies only when the round is complete";
  }
  for (std::size_t i = 0; i < mean.size(); ++i) {
    EXPECT_NEAR(h.params[i], h.initial[i] - lr * mean[i], 1e-6) << i;
  }
  EXPECT_EQ(h.server->iteration(), 1);
  ASSERT_EQ(h.recorder.rounds.size(), 1u);
  EXPECT_EQ(h.recorder.rounds[0].gradients, n);
  EXPECT_EQ(h.recorder.rounds[0].samples, 4 * n);
  EXPECT_EQ(h.recorder.reports.size(), static_cast<std::size_t>(n));
  // The new parameters go to every worker.
  ASSERT_EQ(down.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(std::get<Params>(*down[0].message).iteration, 1);
}

TEST(Ssgd, TrajectoryMatchesSingleProcessMomentumSgdInAnyArrivalOrder) {
  const int n = 3;
  const SgdOptions sgd{.learning_rate = 0.02f, .momentum = 0.9f, .weight_decay = 0.01f};
  Harness h(n, sgd, /*epochs=*/2, /*ipe=*/3);

  // Reference: the same steps in one process.
  std::vector<float> ref = h.initial;
  FlatSgd reference(sgd, ref.size());
  for (int step = 1; step <= 6; ++step) {
    std::vector<float> mean(ref.size(), 0.0f);
    for (int w = 0; w < n; ++w) {
      auto g = h.learners[w]->gradient_at(ref, step);
      for (std::size_t i = 0; i < ref.size(); ++i)
        mean[i] += g[i] / n;
    }
    reference.step(ref, mean);
  }

  Outbox out;
  h.server->on_start(out);
  int rounds = 0;
  while (!out.empty()) {
    auto up = h.deliver_to_workers(out);
    out.clear();
    std::reverse(up.begin(), up.end());  // arrival order must not matter
    if (rounds % 2) std::rotate(up.begin(), up.begin() + 1, up.end());
    for (auto& e : up)
      h.server->on_message(e.to, *e.message, out);
    ++rounds;
  }
  EXPECT_TRUE(h.server->finished());
  EXPECT_EQ(rounds, 6);
  for (std::size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(h.params[i], ref[i], 1e-5) << i;
}

TEST(Ssgd, ProtocolViolationsAreRefused) {
  Harness h(2, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  auto up = h.deliver_to_workers(out);
  Outbox down;
  h.server->on_message(0, *up[0].message, down);
  EXPECT_THROW(h.server->on_message(0, *up[0].message, down), ProtocolError);  // duplicate
  EXPECT_THROW(h.server->on_message(7, *up[1].message, down), ProtocolError);  // unknown worker
  Gradient stale = std::get<Gradient>(*up[1].message);
  stale.iteration = 5;
  EXPECT_THROW(h.server->on_message(1, stale, down), ProtocolError);    // wrong iteration
  EXPECT_THROW(h.server->on_message(1, Hello{}, down), ProtocolError);  // wrong type
  // A worker refuses parameters older than what it has.
  Outbox ignored;
  EXPECT_THROW(h.workers[0]->on_message(*out[0].message, ignored), ProtocolError);
}

TEST(Ssgd, WorkerReportsItsPhaseTimes) {
  Harness h(1, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  Outbox up;
  h.workers[0]->on_message(*out[0].message, up);
  h.workers[0]->compute_step(up);
  h.clock.t += 2.0;  // the worker waits two seconds for the next parameters
  Outbox down;
  h.server->on_message(0, *up[0].message, down);
  Outbox up2;
  h.workers[0]->on_message(*down[0].message, up2);
  h.workers[0]->compute_step(up2);
  EXPECT_DOUBLE_EQ(std::get<Gradient>(*up2[0].message).times.wait_s, 2.0);
}

TEST(Schedule, IterationsPerEpochRoundUp) {
  EXPECT_EQ(make_schedule(60000, 4, 128, 2).iterations_per_epoch, 118);
  EXPECT_EQ(make_schedule(512, 4, 128, 1).iterations_per_epoch, 1);
  EXPECT_EQ(make_schedule(513, 4, 128, 3).total_iterations(), 6);
}

TEST(Factory, UnknownStrategyIsAConfigError) {
  StrategyJob spec;
  spec.psgd = "nope";
  EXPECT_THROW(make_server_role(spec, {}, {}), ConfigError);
}

}  // namespace
}  // namespace psgd
