// Every optimiser of the table (core/optimizer_table.h) against libtorch's own (torch::optim, the
// C++ twin of Python's torch.optim 1.13): the same parameters and the same gradients for several
// steps give the same parameters.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/optimizer.h"
#include "core/optimizer_table.h"

namespace psgd {
namespace {

constexpr std::int64_t kSize = 1031;  // not a multiple of any vector width: the tails run too
constexpr int kSteps = 6;

struct Case {
  const char* name;
  OptimizerSpec spec;
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)> torch;
};

std::vector<Case> cases() {
  using namespace torch::optim;
  std::vector<Case> v;
  auto add = [&](const char* name, OptimizerSpec spec, auto make) {
    v.push_back({name, std::move(spec), make});
  };
  add("sgd momentum nesterov wd",
      {.name = "sgd",
       .schedule = LrSchedule(0.05),
       .momentum = 0.9,
       .weight_decay = 0.01,
       .nesterov = true},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<SGD>(
            p, SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.01));
      });
  add("adam", {.name = "adam", .schedule = LrSchedule(0.001)},
      [](std::vector<torch::Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(0.001)); });
  add("adam wd amsgrad",
      {.name = "adam",
       .schedule = LrSchedule(0.003),
       .weight_decay = 0.01,
       .beta1 = 0.8,
       .beta2 = 0.99,
       .eps = 1e-6,
       .amsgrad = true},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<Adam>(
            p, AdamOptions(0.003).betas({0.8, 0.99}).eps(1e-6).weight_decay(0.01).amsgrad(true));
      });
  add("adamw", {.name = "adamw", .schedule = LrSchedule(0.002), .weight_decay = 0.05},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<AdamW>(p, AdamWOptions(0.002).weight_decay(0.05));
      });
  add("adagrad",
      {.name = "adagrad",
       .schedule = LrSchedule(0.05),
       .weight_decay = 0.001,
       .eps = 1e-10,
       .lr_decay = 0.01,
       .initial_accumulator_value = 0.1},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<Adagrad>(p, AdagradOptions(0.05)
                                                .lr_decay(0.01)
                                                .weight_decay(0.001)
                                                .initial_accumulator_value(0.1)
                                                .eps(1e-10));
      });
  add("rmsprop", {.name = "rmsprop", .schedule = LrSchedule(0.01)},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<RMSprop>(p, RMSpropOptions(0.01));
      });
  add("rmsprop centered wd",
      {.name = "rmsprop",
       .schedule = LrSchedule(0.01),
       .weight_decay = 0.01,
       .alpha = 0.9,
       .centered = true},
      [](std::vector<torch::Tensor> p) {
        return std::make_unique<RMSprop>(
            p, RMSpropOptions(0.01).alpha(0.9).weight_decay(0.01).centered(true));
      });
  return v;
}

TEST(OptimizersAgainstTorch, EveryStepMatchesLibtorch) {
  std::set<std::string> covered;
  double max_error = 0;
  for (const Case& c : cases()) {
    torch::manual_seed(7);
    torch::Tensor reference = torch::randn({kSize}).set_requires_grad(true);
    std::vector<float> flat(reference.data_ptr<float>(), reference.data_ptr<float>() + kSize);
    auto theirs = c.torch({reference});
    auto ours = make_optimizer(c.spec, kSize);
    for (int step = 0; step < kSteps; ++step) {
      const torch::Tensor g = torch::randn({kSize}) * (step + 1);
      const std::vector<float> before = flat;
      reference.mutable_grad() = g.clone();
      theirs->step();
      ours->step(flat, std::span<const float>(g.data_ptr<float>(), kSize), step);
      // Not bit for bit: libtorch's vectorised add(other, alpha) is a fused multiply-add
      // (vec::fmadd) and its scalar tail is not, so the two round differently in the last bit
      // here and there. Each step must agree to a few ulps of the parameter's size, before or
      // after the step (a step that nearly cancels the parameter loses relative precision).
      const float* expected = reference.data_ptr<float>();
      double worst = 0;
      for (std::int64_t i = 0; i < kSize; ++i) {
        const double scale = std::max({1e-3, static_cast<double>(std::abs(expected[i])),
                                       static_cast<double>(std::abs(before[i]))});
        worst = std::max(worst, std::abs(static_cast<double>(flat[i]) - expected[i]) / scale);
      }
      EXPECT_LT(worst, 1e-6) << c.name << " step " << step;
      max_error = std::max(max_error, worst);
      // Carry on from libtorch's parameters, so errors do not compound over the steps.
      std::copy(expected, expected + kSize, flat.begin());
    }
    covered.insert(c.spec.name);
  }
  std::printf("largest relative difference from libtorch: %.3g\n", max_error);
  // Every optimiser of the table is compared.
  for (const OptimizerEntry& e : optimizer_table())
    EXPECT_TRUE(covered.count(std::string(e.name))) << e.name << " has no libtorch comparison";
}

}  // namespace
}  // namespace psgd
