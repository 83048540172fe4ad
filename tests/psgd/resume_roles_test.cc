// Checkpoint and resume of every strategy, role by role (psgd/strategy.h snapshot / restore on
// the server and on the workers), through the checkpoint protocol init_server follows
// (tests/psgd/checkpoint_sim.h). The defining property: a run resumed from its checkpoint ends
// with the parameters of the uninterrupted run, bit for bit, for the strategies whose result
// does not depend on arrival order; asgd and ssp continue from the checkpoint's iteration, with
// their bookkeeping, and finish.
#include <gtest/gtest.h>

#include <cmath>

#include "psgd/asgd.h"
#include "psgd/factory.h"
#include "psgd/ssp.h"
#include "tests/psgd/checkpoint_sim.h"

namespace psgd {
namespace {

using testing::CheckpointedRun;

struct Case {
  const char* psgd;
  const char* codec;
  const char* momentum_at = "auto";
  int redundancy = 1;
};

std::string describe(const Case& c) {
  return fmt::format("{} {} momentum_at {}", c.psgd, c.codec, c.momentum_at);
}

StrategyJob job_of(const Case& c) {
  StrategyJob job = testing::job(c.psgd, 4, 0.05, 0.9, 0.01);
  job.codec = c.codec;
  job.momentum_at = c.momentum_at;
  job.redundancy = c.redundancy;
  job.batch_size = 16;
  job.epochs = 3;
  if (std::string(c.codec) == "topk" || std::string(c.codec) == "randk") job.codec_ratio = 0.4;
  return job;
}

// The synchronous strategies, with workers that carry state (error feedback, worker momentum, a
// random stream) and without.
const Case kDeterministic[] = {
    {"ssgd", "plain", "server"}, {"ssgd", "sign"},
    {"ssgd", "qsgd", "worker"},  {"ssgd", "topk"},
    {"local_sgd", "plain"},      {"local_sgd", "sign"},
    {"allreduce", "plain"},      {"broadcast", "plain"},
    {"broadcast", "sign"},       {"broadcast", "randk"},
};

TEST(ResumeRoles, EverySynchronousStrategyResumesBitIdentically) {
  for (const Case& c : kDeterministic) {
    SCOPED_TRACE(describe(c));
    const StrategyJob job = job_of(c);
    ASSERT_NO_THROW(job.validate());
    ASSERT_TRUE(supports_checkpoints(job));
    const Schedule schedule = make_schedule(job, 16 * 4 * 6);  // 6 iterations per epoch
    const std::int64_t every = 4;
    CheckpointedRun whole(job, schedule, every);
    ASSERT_TRUE(whole.run(1));
    ASSERT_TRUE(whole.saved.has_value());
    EXPECT_GT(whole.saved->iteration, 0);
    EXPECT_LT(whole.saved->iteration, schedule.total_iterations());
    bool stateful = false;
    for (const auto& s : whole.saved->worker_states)
      stateful = stateful || !s.empty();
    // With worker-side momentum or error feedback the workers' state is what makes resume exact.
    if (std::string(c.codec) == "sign" || std::string(c.psgd) == "local_sgd" ||
        std::string(c.psgd) == "allreduce") {
      EXPECT_TRUE(stateful);
    }
    // The resumed run, in another event order (the result does not depend on it).
    CheckpointedRun resumed(job, schedule, every, *whole.saved);
    EXPECT_EQ(resumed.sim.server->iteration(), whole.saved->iteration);
    ASSERT_TRUE(resumed.run(2));
    EXPECT_EQ(resumed.sim.server->iteration(), schedule.total_iterations());
    EXPECT_EQ(resumed.sim.params, whole.sim.params);
  }
}

// Without the workers' state a resumed run differs: the state is what the test above relies on.
TEST(ResumeRoles, WithoutTheWorkersStateTheResumeIsNotExact) {
  const Case c{"ssgd", "sign"};
  const StrategyJob job = job_of(c);
  const Schedule schedule = make_schedule(job, 16 * 4 * 6);
  CheckpointedRun whole(job, schedule, 4);
  ASSERT_TRUE(whole.run(1));
  testing::Saved saved = *whole.saved;
  for (auto& s : saved.worker_states)
    s.clear();
  CheckpointedRun resumed(job, schedule, 4, saved);
  ASSERT_TRUE(resumed.run(2));
  EXPECT_NE(resumed.sim.params, whole.sim.params);
}

double distance_to_optimum(const testing::RoleSim& sim) {
  const int n = sim.schedule.node_count;
  double d = 0;
  for (std::size_t i = 0; i < sim.params.size(); ++i) {
    const double optimum = (n + 1) / 2.0 * static_cast<double>(i + 1);
    d += (sim.params[i] - optimum) * (sim.params[i] - optimum);
  }
  return std::sqrt(d);
}

// asgd (with and without delay compensation) and ssp: arrival order decides their result, so a
// resumed run is not the uninterrupted one; it continues from the checkpoint's iteration with
// the checkpoint's bookkeeping (each worker's batch count, the optimiser, DC-ASGD's per-worker
// history), its state survives a second snapshot unchanged, and it finishes and learns.
TEST(ResumeRoles, AsynchronousStrategiesContinueFromTheirCheckpoint) {
  for (const char* psgd : {"asgd", "ssp"}) {
    for (double dc : {0.0, 0.04}) {
      if (dc > 0 && std::string(psgd) != "asgd") continue;
      SCOPED_TRACE(fmt::format("{} delay_compensation {}", psgd, dc));
      // Worker-side momentum (the default for both): the workers' state matters.
      StrategyJob job = job_of({psgd, "plain"});
      job.delay_compensation = dc;
      if (dc > 0) job.delay_compensation_mode = "constant";  // DC-ASGD-c, the paper's 0.04
      const Schedule schedule = make_schedule(job, 16 * 4 * 6);
      CheckpointedRun whole(job, schedule, 10);
      const double initial = distance_to_optimum(whole.sim);
      ASSERT_TRUE(whole.run(3));
      ASSERT_TRUE(whole.saved.has_value());
      EXPECT_LT(distance_to_optimum(whole.sim), 0.5 * initial);
      const testing::Saved& saved = *whole.saved;
      std::int64_t batches = 0;
      for (auto b : saved.worker_batches)
        batches += b;
      EXPECT_EQ(batches, saved.iteration);  // one server update per gradient
      CheckpointedRun resumed(job, schedule, 10, saved);
      EXPECT_EQ(resumed.sim.server->iteration(), saved.iteration);
      EXPECT_EQ(resumed.sim.server->snapshot(), saved.role_state);
      for (int w = 0; w < 4; ++w)
        EXPECT_EQ(resumed.sim.server->worker_batches(w), saved.worker_batches[w]);
      ASSERT_TRUE(resumed.run(4));
      EXPECT_EQ(resumed.sim.server->iteration(), schedule.total_iterations());
      EXPECT_LT(distance_to_optimum(resumed.sim), 0.5 * initial);
    }
  }
}

// gc and ndc: which replica of a group delivers a round depends on arrival order, and a replica
// dropped as late draws its next batches later than its group, so their result depends on
// timing as asgd's does. A resumed run continues from the checkpoint's round, each worker past
// r batches per gradient it had sent, and finishes and learns.
TEST(ResumeRoles, GradientCodingContinuesFromItsCheckpoint) {
  for (const char* codec : {"gc", "ndc"}) {
    SCOPED_TRACE(codec);
    const StrategyJob job = job_of({"ssgd", codec, "auto", 2});
    const Schedule schedule = make_schedule(job, 16 * 4 * 6);
    CheckpointedRun whole(job, schedule, 4);
    const double initial = distance_to_optimum(whole.sim);
    ASSERT_TRUE(whole.run(5));
    ASSERT_TRUE(whole.saved.has_value());
    for (auto b : whole.saved->worker_batches) {
      EXPECT_EQ(b % 2, 0);
    }
    CheckpointedRun resumed(job, schedule, 4, *whole.saved);
    EXPECT_EQ(resumed.sim.server->iteration(), whole.saved->iteration);
    ASSERT_TRUE(resumed.run(6));
    EXPECT_EQ(resumed.sim.server->iteration(), schedule.total_iterations());
    EXPECT_LT(distance_to_optimum(resumed.sim), 0.5 * initial);
  }
}

// A resumed ssp server holds the workers that were more than --staleness ahead of the slowest
// until it catches up, as it did before the crash.
TEST(ResumeRoles, SspHoldsWorkersBeyondTheBoundAfterAResume) {
  StrategyJob job = job_of({"ssp", "plain"});
  job.staleness = 1;
  const Schedule schedule = make_schedule(job, 16 * 4 * 6);
  std::vector<float> params(5, 0.0f);
  testing::ManualClock clock;
  auto make = [&] {
    return make_server_role(job, schedule,
                            ServerContext{.parameters = params,
                                          .optimizer = optimizer_spec(job, schedule),
                                          .uplink = uplink_codec_spec(job, 0),
                                          .clock = &clock});
  };
  auto a = make();
  Outbox out;
  a->on_start(out);
  // Worker 0 sends two gradients (clock 2), the others none: worker 0 is held at the bound.
  for (int k = 0; k < 2; ++k) {
    Gradient g{.iteration = k == 0 ? 0 : 1,
               .values = make_codec({.name = "plain"})->encode(std::vector<float>(5, 0.1f)),
               .samples = 16};
    Outbox o;
    a->on_message(0, g, o);
  }
  ASSERT_EQ(static_cast<SspServer&>(*a).clock(0), 2);
  auto b = make();
  b->restore(a->snapshot());
  Outbox start;
  b->on_start(start);
  std::vector<int> sent;
  for (const auto& e : start)
    sent.push_back(e.to);
  EXPECT_EQ(sent, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(b->worker_batches(0), 2);
}

TEST(ResumeRoles, StateOfAnotherJobIsRefused) {
  for (const char* psgd : {"asgd", "ssp", "local_sgd", "allreduce"}) {
    SCOPED_TRACE(psgd);
    const StrategyJob job = job_of({psgd, "plain"});
    StrategyJob three = job;
    three.node_count = 3;
    std::vector<float> params(5, 0.0f);
    testing::ManualClock clock;
    auto make = [&](const StrategyJob& j) {
      return make_server_role(
          j, make_schedule(j, 16 * 4 * 6),
          ServerContext{.parameters = params,
                        .optimizer = optimizer_spec(j, make_schedule(j, 16 * 4 * 6)),
                        .uplink = uplink_codec_spec(j, 0),
                        .clock = &clock});
    };
    const auto state = make(job)->snapshot();
    EXPECT_THROW(make(three)->restore(state), ConfigError);
    EXPECT_THROW(make(job)->restore(std::span(state).first(state.size() - 1)), Error);
    EXPECT_NO_THROW(make(job)->restore(state));
  }
}

}  // namespace
}  // namespace psgd
