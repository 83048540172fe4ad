// The optimiser table and the flat optimisers: SGD behind the Optimizer interface is FlatSgd bit
// for bit, Adam's first step has its known value, state survives a snapshot, and flags an
// optimiser does not read are refused. (tests/nn/optimizer_torch_test.cc compares every optimiser
// with libtorch's, step by step.)
#include "core/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/optimizer_table.h"
#include "core/rng.h"
#include "core/sgd.h"

namespace psgd {
namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v)
    x = static_cast<float>(static_cast<double>(uniform_below(rng, 2001)) / 1000.0 - 1.0);
  return v;
}

TEST(Optimizers, SgdIsFlatSgdBitForBit) {
  for (const bool nesterov : {false, true}) {
    const SgdOptions flat_options{
        .learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = nesterov};
    FlatSgd reference(flat_options, 64);
    auto sgd = make_optimizer(OptimizerSpec{.name = "sgd",
                                            .schedule = LrSchedule(0.05),
                                            .momentum = 0.9,
                                            .weight_decay = 0.01,
                                            .nesterov = nesterov},
                              64);
    std::vector<float> a = random_vector(64, 1), b = a;
    for (int step = 0; step < 5; ++step) {
      const auto g = random_vector(64, 10 + static_cast<std::uint64_t>(step));
      reference.step(a, g);
      sgd->step(b, g, step);
    }
    EXPECT_EQ(a, b) << "nesterov " << nesterov;
  }
}

TEST(Optimizers, AdamsFirstStepIsTheRateTimesTheGradientsSign) {
  // With bias correction m / sqrt(v) = g / |g| on the first step: p -= lr * sign(g).
  auto adam =
      make_optimizer(OptimizerSpec{.name = "adam", .schedule = LrSchedule(0.01), .eps = 1e-8}, 4);
  std::vector<float> p{1, 1, 1, 1};
  const std::vector<float> g{0.5f, -2.0f, 1e-3f, -7.0f};
  adam->step(p, g, 0);
  for (std::size_t i = 0; i < p.size(); ++i)
    EXPECT_NEAR(p[i], 1.0f - 0.01f * std::copysign(1.0f, g[i]), 1e-6) << i;
}

TEST(Optimizers, TheScheduleSetsEachStepsRate) {
  // Plain SGD: the step is the schedule's rate for the iteration times the gradient.
  const LrSchedule schedule(LrScheduleOptions{.lr_schedule = "step:1:0.5"}, 0.4, 1, 2, 4);
  auto sgd = make_optimizer(OptimizerSpec{.name = "sgd", .schedule = schedule}, 1);
  std::vector<float> p{0};
  const std::vector<float> g{1};
  for (std::int64_t i = 0; i < 6; ++i) {
    const float before = p[0];
    sgd->step(p, g, i);
    EXPECT_FLOAT_EQ(before - p[0], static_cast<float>(schedule.rate(i))) << i;
  }
  EXPECT_FLOAT_EQ(static_cast<float>(schedule.rate(5)), 0.1f);
}

TEST(Optimizers, StateSurvivesASnapshot) {
  for (const OptimizerEntry& e : optimizer_table()) {
    OptimizerSpec spec{.name = std::string(e.name),
                       .schedule = LrSchedule(0.01),
                       .momentum = 0.9,
                       .weight_decay = 0.001,
                       .amsgrad = true,
                       .centered = true,
                       .initial_accumulator_value = 0.1};
    auto a = make_optimizer(spec, 32);
    std::vector<float> pa = random_vector(32, 3);
    for (int s = 0; s < 3; ++s)
      a->step(pa, random_vector(32, 20 + static_cast<std::uint64_t>(s)), s);
    const auto bytes = a->snapshot();
    auto b = make_optimizer(spec, 32);
    b->restore(bytes);
    EXPECT_EQ(b->steps(), 3);
    std::vector<float> pb = pa;
    for (int s = 3; s < 6; ++s) {
      const auto g = random_vector(32, 20 + static_cast<std::uint64_t>(s));
      a->step(pa, g, s);
      b->step(pb, g, s);
    }
    EXPECT_EQ(pa, pb) << e.name;
    // Another optimiser's state, another size, or damaged bytes are refused.
    auto other_size = make_optimizer(spec, 31);
    EXPECT_THROW(other_size->restore(bytes), ConfigError) << e.name;
    auto truncated = bytes;
    truncated.pop_back();
    EXPECT_THROW(b->restore(truncated), ConfigError) << e.name;
    OptimizerSpec other = spec;
    other.name = e.name == "sgd" ? "adam" : "sgd";
    EXPECT_THROW(make_optimizer(other, 32)->restore(bytes), ConfigError) << e.name;
  }
}

std::string refusal(const OptimizerOptions& o) {
  try {
    o.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Optimizers, FlagsAnOptimiserDoesNotReadAreRefused) {
  EXPECT_EQ(refusal({.optimizer = "adam", .momentum = 0.0}), "");
  const OptimizerOptions tuned{.optimizer = "adam", .beta2 = 0.98, .eps = 1e-6, .amsgrad = true};
  EXPECT_EQ(refusal(tuned), "");
  EXPECT_EQ(refusal({.optimizer = "adagrad", .lr_decay = 0.01}), "");
  EXPECT_EQ(refusal({.optimizer = "rmsprop", .alpha = 0.9, .centered = true}), "");
  EXPECT_EQ(refusal({.optimizer = "sgd", .beta1 = 0.8}),
            "--beta1 applies to --optimizer adam, adamw only, not --optimizer sgd");
  EXPECT_EQ(refusal({.optimizer = "adam", .momentum = 0.5}),
            "--momentum applies to --optimizer sgd only, not --optimizer adam");
  EXPECT_EQ(refusal({.optimizer = "rmsprop", .amsgrad = true}),
            "--amsgrad applies to --optimizer adam, adamw only, not --optimizer rmsprop");
  EXPECT_NE(refusal({.optimizer = "adamw", .momentum_at = "worker"}).find("--momentum_at worker"),
            std::string::npos);
  EXPECT_EQ(refusal({.optimizer = "lamb"}),
            "--optimizer lamb: unknown value; choose one of: sgd, adam, adamw, adagrad, rmsprop");
  EXPECT_NE(refusal({.optimizer = "adam", .beta1 = 1.0}), "");
  EXPECT_NE(refusal({.optimizer = "adam", .eps = -1}), "");
}

TEST(Optimizers, EpsDefaultsToTheOptimisers) {
  EXPECT_EQ(OptimizerOptions{.optimizer = "adam"}.effective_eps(), 1e-8);
  EXPECT_EQ(OptimizerOptions{.optimizer = "adagrad"}.effective_eps(), 1e-10);
  const OptimizerOptions adagrad{.optimizer = "adagrad", .eps = 1e-6};
  EXPECT_EQ(adagrad.effective_eps(), 1e-6);
}

}  // namespace
}  // namespace psgd
