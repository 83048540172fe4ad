// ssgd's --overlap (psgd/gradient_worker.h): a worker computes batch t+1 on the parameters of
// iteration t while batch t's gradient travels, so every round after the first averages gradients
// one step stale. These tests pin that delay down exactly, whatever order the events run in.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/error.h"
#include "psgd/common.h"
#include "psgd/factory.h"
#include "psgd/job.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

using testing::RoleSim;

constexpr int kNodes = 3;
constexpr double kLr = 0.05;
constexpr Schedule kSchedule{.node_count = kNodes, .iterations_per_epoch = 4, .epochs = 2};

StrategyJob overlap_job(bool overlap) {
  StrategyJob spec = testing::job("ssgd", kNodes, kLr);
  spec.overlap = overlap;
  return spec;
}

// The parameters after every round of ssgd by hand: round t averages each worker's gradient of
// its step t + 1 (ToyLearner's gradient depends on the step), computed on the parameters
// `delay` rounds back (never before the first).
std::vector<float> by_hand(const RoleSim& sim, int delay) {
  std::vector<std::vector<float>> history{sim.initial};
  for (std::int64_t t = 0; t < kSchedule.total_iterations(); ++t) {
    const std::vector<float>& at =
        history[static_cast<std::size_t>(std::max<std::int64_t>(0, t - delay))];
    std::vector<float> sum(at.size(), 0.0f);
    for (const auto& learner : sim.learners) {
      const std::vector<float> g = learner->gradient_at(at, static_cast<int>(t + 1));
      for (std::size_t i = 0; i < sum.size(); ++i)
        sum[i] += g[i];
    }
    std::vector<float> next = history.back();
    for (std::size_t i = 0; i < next.size(); ++i)
      next[i] -= static_cast<float>(kLr) * (sum[i] / kNodes);
    history.push_back(next);
  }
  return history.back();
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5) << "parameter " << i;
}

TEST(Overlap, ParametersFollowTheOneStepDelayedSgdSequenceInAnyEventOrder) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    RoleSim sim(overlap_job(true), kSchedule);
    sim.start();
    ASSERT_TRUE(sim.run_random(seed)) << "seed " << seed;
    expect_near(sim.params, by_hand(sim, 1));
    // Each worker computed exactly one batch per iteration: none ahead of the last one.
    for (int w = 0; w < kNodes; ++w) {
      EXPECT_EQ(sim.sent[static_cast<std::size_t>(w)], kSchedule.total_iterations());
      EXPECT_EQ(sim.workers[static_cast<std::size_t>(w)]->iterations_done(),
                kSchedule.total_iterations());
      EXPECT_FALSE(sim.computing[static_cast<std::size_t>(w)]) << "a step beyond the last";
    }
  }
}

TEST(Overlap, WithoutItTheSameJobIsPlainSsgdAndTheTwoTrajectoriesDiffer) {
  RoleSim plain(overlap_job(false), kSchedule);
  plain.start();
  ASSERT_TRUE(plain.run_random(7));
  expect_near(plain.params, by_hand(plain, 0));
  // The delay is visible: the test above could not pass with an undelayed worker.
  const std::vector<float> delayed = by_hand(plain, 1);
  float gap = 0;
  for (std::size_t i = 0; i < delayed.size(); ++i)
    gap = std::max(gap, std::abs(delayed[i] - plain.params[i]));
  EXPECT_GT(gap, 1e-3);
}

// By hand: parameters that arrive before the step computed ahead has run (a TCP driver can read
// them first) wait for it, so that step still computes on the old parameters.
TEST(Overlap, ParametersThatOvertakeTheStepAheadWaitForIt) {
  testing::ManualClock clock;
  const std::vector<float> target{1, 2, 3};
  testing::ToyLearner learner(target, target.size());
  auto worker = make_worker_role(overlap_job(true), kSchedule,
                                 WorkerContext{.learner = &learner, .clock = &clock});
  auto codec = make_codec(CodecSpec{});
  const std::vector<float> w0{0.5f, -1, 2}, w1{0.25f, 0, 1};

  Outbox out;
  ASSERT_TRUE(worker->on_message(*params_message(0, *codec, w0), out).compute);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(worker->compute_step(out).compute) << "asks to compute ahead at once";
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<Gradient>(*out[0].message).iteration, 0);

  Outbox early;
  EXPECT_FALSE(worker->on_message(*params_message(1, *codec, w1), early).compute);
  EXPECT_TRUE(early.empty());
  const std::vector<float> installed(learner.parameters().begin(), learner.parameters().end());
  EXPECT_EQ(installed, w0) << "installed before the step ahead ran";

  Outbox ahead;
  EXPECT_TRUE(worker->compute_step(ahead).compute) << "then batch 3 on the new parameters";
  ASSERT_EQ(ahead.size(), 1u);
  const Gradient& g = std::get<Gradient>(*ahead[0].message);
  EXPECT_EQ(g.iteration, 1);
  std::vector<float> values(target.size());
  codec->decode(g.values, values);
  EXPECT_EQ(values, learner.gradient_at(w0, 2)) << "batch 2's gradient, computed on w0";
  const std::vector<float> now(learner.parameters().begin(), learner.parameters().end());
  EXPECT_EQ(now, w1);

  // Parameters of another iteration than the one the held gradient answers break the protocol.
  Outbox more;
  EXPECT_FALSE(worker->compute_step(more).compute);
  EXPECT_TRUE(more.empty()) << "held until iteration 2's parameters arrive";
  EXPECT_THROW(worker->on_message(*params_message(3, *codec, w1), more), ProtocolError);
}

void expect_refused(const StrategyJob& spec, const std::string& part) {
  try {
    spec.validate();
    ADD_FAILURE() << "accepted; expected a refusal containing: " << part;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(part), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

TEST(Overlap, IsRefusedWhereItMeansNothing) {
  // (ssgd's and allreduce's: tests/psgd/allreduce_overlap_test.cc has allreduce's refusals.)
  for (const char* psgd : {"asgd", "ssp", "local_sgd", "broadcast"}) {
    StrategyJob spec = testing::job(psgd, 4, 0.1);
    spec.overlap = true;
    expect_refused(spec, "--overlap applies to --psgd ");
  }
  StrategyJob backup = testing::job("ssgd", 4, 0.1);
  backup.overlap = true;
  backup.wait_for = 3;
  expect_refused(backup, "--overlap with --wait_for 3");
  StrategyJob coded = testing::job("ssgd", 4, 0.1);
  coded.overlap = true;
  coded.codec = "gc";
  coded.redundancy = 2;
  expect_refused(coded, "--overlap with --codec gc");
  StrategyJob fine = testing::job("ssgd", 4, 0.1);
  fine.overlap = true;
  fine.wait_for = 4;  // every worker: the same as 0
  EXPECT_NO_THROW(fine.validate());
}

}  // namespace
}  // namespace psgd
