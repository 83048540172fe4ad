#include "core/sgd.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"

namespace psgd {
namespace {

// Reference values computed by hand from torch.optim.SGD's documented update rule.
TEST(FlatSgd, PlainStepIsParamsMinusLrTimesGrad) {
  FlatSgd sgd({.learning_rate = 0.5f}, 3);
  std::vector<float> p{1, 2, 3}, g{0.2f, -0.4f, 1.0f};
  sgd.step(p, g);
  EXPECT_FLOAT_EQ(p[0], 0.9f);
  EXPECT_FLOAT_EQ(p[1], 2.2f);
  EXPECT_FLOAT_EQ(p[2], 2.5f);
}

TEST(FlatSgd, MomentumFirstStepUsesGradientThenAccumulates) {
  FlatSgd sgd({.learning_rate = 0.1f, .momentum = 0.9f}, 1);
  std::vector<float> p{1}, g{1};
  sgd.step(p, g);  // buf = 1; p = 1 - 0.1
  EXPECT_FLOAT_EQ(p[0], 0.9f);
  sgd.step(p, g);  // buf = 0.9 + 1 = 1.9; p = 0.9 - 0.19
  EXPECT_FLOAT_EQ(p[0], 0.71f);
  EXPECT_FLOAT_EQ(sgd.momentum_buffer()[0], 1.9f);
}

TEST(FlatSgd, WeightDecayAndNesterov) {
  FlatSgd sgd({.learning_rate = 0.1f, .momentum = 0.5f, .weight_decay = 0.1f, .nesterov = true}, 1);
  std::vector<float> p{2}, g{1};
  sgd.step(p, g);  // d = 1 + 0.2 = 1.2; buf = 1.2; step = d + 0.5*buf = 1.8; p = 2 - 0.18
  EXPECT_FLOAT_EQ(p[0], 1.82f);
}

TEST(FlatSgd, SizeMismatchThrows) {
  FlatSgd sgd({}, 2);
  std::vector<float> p{1, 2}, g{1};
  EXPECT_THROW(sgd.step(p, g), Error);
}

}  // namespace
}  // namespace psgd
