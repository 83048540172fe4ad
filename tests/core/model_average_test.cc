#include "core/model_average.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"

namespace psgd {
namespace {

// The definition, term by term: sum_i beta^(t - i) (1 - beta) p_i / (1 - beta^t).
double reference(const std::vector<double>& iterates, double beta) {
  const auto t = static_cast<double>(iterates.size());
  double sum = 0;
  for (std::size_t i = 0; i < iterates.size(); ++i)
    sum += std::pow(beta, t - static_cast<double>(i + 1)) * (1 - beta) * iterates[i];
  return sum / (1 - std::pow(beta, t));
}

TEST(ModelAverage, EqualsTheBiasCorrectedExponentialAverageOfTheIterates) {
  const double beta = 0.9;
  ModelAverage avg(beta, 2);
  std::vector<double> a, b;
  std::vector<float> out(2);
  for (int t = 1; t <= 30; ++t) {
    const float pa = static_cast<float>(std::sin(t)), pb = static_cast<float>(t);
    a.push_back(pa);
    b.push_back(pb);
    avg.add(std::vector<float>{pa, pb});
    ASSERT_TRUE(avg.average(out));
    EXPECT_NEAR(out[0], reference(a, beta), 1e-5) << "after " << t;
    EXPECT_NEAR(out[1], reference(b, beta), 1e-4 * t) << "after " << t;
  }
  EXPECT_EQ(avg.updates(), 30);
}

TEST(ModelAverage, FirstUpdateIsTheIterateItselfNotPulledTowardsZero) {
  ModelAverage avg(0.999, 1);
  std::vector<float> out{42};
  EXPECT_FALSE(avg.average(out)) << "no average before any update";
  EXPECT_EQ(out[0], 42.0f);
  avg.add(std::vector<float>{3.0f});
  ASSERT_TRUE(avg.average(out));
  EXPECT_NEAR(out[0], 3.0f, 1e-5);
}

TEST(ModelAverage, KUpdatesAtOnceEqualKEqualUpdates) {
  ModelAverage once(0.95, 1), stepwise(0.95, 1);
  once.add(std::vector<float>{1.0f});
  stepwise.add(std::vector<float>{1.0f});
  once.add(std::vector<float>{-2.0f}, 4);  // local_sgd: one average closes 4 iterations
  for (int k = 0; k < 4; ++k)
    stepwise.add(std::vector<float>{-2.0f});
  std::vector<float> x(1), y(1);
  once.average(x);
  stepwise.average(y);
  EXPECT_NEAR(x[0], y[0], 1e-6);
  EXPECT_NEAR(x[0], reference({1, -2, -2, -2, -2}, 0.95), 1e-6);
  EXPECT_EQ(once.updates(), 5);
}

TEST(ModelAverage, OldIteratesFadeGeometrically) {
  ModelAverage avg(0.5, 1);
  avg.add(std::vector<float>{8.0f});
  avg.add(std::vector<float>{0.0f});  // (0.5 * 0.5 * 8 + 0.5 * 0) / (1 - 0.25) = 8 / 3
  std::vector<float> out(1);
  avg.average(out);
  EXPECT_NEAR(out[0], 8.0f / 3.0f, 1e-6);
}

TEST(ParseModelAverage, OffOrEmaWithADecayInsideTheUnitInterval) {
  EXPECT_EQ(parse_model_average("off"), 0.0);
  EXPECT_DOUBLE_EQ(parse_model_average("ema:0.99"), 0.99);
  for (const char* bad : {"ema:1", "ema:0", "ema:", "ema:0.9x", "ema:-0.5", "swa", "on", ""})
    EXPECT_THROW(parse_model_average(bad), ConfigError) << bad;
}

}  // namespace
}  // namespace psgd
