// The learning-rate schedules give their formula's rate at every iteration of every epoch
// (core/lr_schedule.h), and bad spellings are refused naming the flag.
#include "core/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace psgd {
namespace {

constexpr std::int64_t kIpe = 7;  // iterations per epoch
constexpr int kEpochs = 9;

LrSchedule make(const std::string& spec, double warmup = 0, const std::string& scaling = "none",
                int nodes = 4) {
  return LrSchedule(
      LrScheduleOptions{.lr_schedule = spec, .lr_warmup_epochs = warmup, .lr_scaling = scaling},
      0.1, nodes, kIpe, kEpochs);
}

TEST(LrSchedule, ConstantIsTheLearningRateEverywhere) {
  const LrSchedule s = make("constant");
  for (std::int64_t i = 0; i < kIpe * kEpochs; ++i)
    EXPECT_EQ(s.rate(i), 0.1) << i;
  EXPECT_EQ(LrSchedule(0.25).rate(1000), 0.25);
}

TEST(LrSchedule, StepMultipliesByGammaEveryEEpochs) {
  const LrSchedule s = make("step:3:0.5");
  for (int k = 0; k < kEpochs; ++k) {
    const double expected = 0.1 * std::pow(0.5, k / 3);
    for (std::int64_t i = k * kIpe; i < (k + 1) * kIpe; ++i)
      EXPECT_DOUBLE_EQ(s.rate(i), expected) << "epoch " << k << " iteration " << i;
  }
}

TEST(LrSchedule, MilestonesMultiplyAtTheirEpochs) {
  const LrSchedule s = make("step:2,5:0.1");
  const double expected[kEpochs] = {0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001};
  for (int k = 0; k < kEpochs; ++k)
    EXPECT_NEAR(s.rate(k * kIpe + 3), expected[k], 1e-15) << k;
}

TEST(LrSchedule, CosineIsHalfACosineOverTheEpochs) {
  const LrSchedule s = make("cosine");
  for (int k = 0; k < kEpochs; ++k) {
    const double expected = 0.1 * 0.5 * (1 + std::cos(std::numbers::pi * k / kEpochs));
    EXPECT_DOUBLE_EQ(s.rate(k * kIpe), expected) << k;
    EXPECT_DOUBLE_EQ(s.rate(k * kIpe + kIpe - 1), expected) << k;
  }
  EXPECT_DOUBLE_EQ(s.rate(0), 0.1);
}

TEST(LrSchedule, WarmUpRampsLinearlyFromZero) {
  const LrSchedule s = make("constant", 2);  // 14 iterations
  for (std::int64_t i = 0; i < 14; ++i)
    EXPECT_DOUBLE_EQ(s.rate(i), 0.1 * static_cast<double>(i + 1) / 14) << i;
  EXPECT_DOUBLE_EQ(s.rate(14), 0.1);
  EXPECT_DOUBLE_EQ(s.rate(13), 0.1);  // reaches the rate at the warm-up's last iteration
}

TEST(LrSchedule, LinearScalingWarmsUpFromTheSingleWorkerRate) {
  // Goyal et al.: 4 workers take 4 x 0.1, reached gradually from 0.1 over the warm-up.
  const LrSchedule s = make("constant", 1, "linear", 4);
  EXPECT_DOUBLE_EQ(s.base(), 0.4);
  for (std::int64_t i = 0; i < kIpe; ++i) {
    const double t = static_cast<double>(i + 1) / kIpe;
    EXPECT_DOUBLE_EQ(s.rate(i), 0.4 * (0.25 + 0.75 * t)) << i;
  }
  EXPECT_DOUBLE_EQ(s.rate(kIpe), 0.4);
  EXPECT_DOUBLE_EQ(make("constant", 0, "linear", 8).rate(0), 0.8);
}

TEST(LrSchedule, WarmUpAndScheduleMultiply) {
  const LrSchedule s = make("step:1:0.5", 1.5);  // warm-up of 11 iterations over epochs 0 and 1
  EXPECT_DOUBLE_EQ(s.rate(0), 0.1 * 1.0 / 11);
  EXPECT_DOUBLE_EQ(s.rate(kIpe), 0.1 * 0.5 * (kIpe + 1.0) / 11);
  EXPECT_DOUBLE_EQ(s.rate(11), 0.1 * 0.5);
}

TEST(LrSchedule, BadSpellingsAreRefusedNamingTheFlag) {
  for (const char* bad : {"linear", "step", "step:0:0.1", "step:3", "step:x:0.1", "step:3:0",
                          "step:3:-1", "step:5,2:0.1", "step:2,2:0.1", "step::0.1"}) {
    try {
      LrScheduleOptions{.lr_schedule = bad}.validate();
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--lr_schedule"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(LrScheduleOptions{.lr_warmup_epochs = -1}.validate(), ConfigError);
  EXPECT_THROW(LrScheduleOptions{.lr_scaling = "sqrt"}.validate(), ConfigError);
}

}  // namespace
}  // namespace psgd
