// DivergenceWatch and what is said about a divergence (experiments/divergence.h), and
// --on_divergence as a JobSpec field: stop or continue, through JSON, and not part of the job's
// config hash.
#include "experiments/divergence.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace psgd {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(DivergenceWatch, KeepsTheFirstNonFiniteLossAndTheLastFiniteOneBeforeIt) {
  DivergenceWatch watch;
  watch.evaluated(0, 0, "test loss", 2.3);
  watch.round(1, 1, 1.5);
  watch.round(1, 2, 1e30);
  EXPECT_FALSE(watch.divergence());
  watch.round(1, 3, -kInf);
  watch.round(1, 4, kNan);  // later ones do not replace it
  watch.evaluated(1, 4, "test loss", kNan);
  ASSERT_TRUE(watch.divergence());
  const Divergence& d = *watch.divergence();
  EXPECT_EQ(d.iteration, 3);
  EXPECT_EQ(d.epoch, 1);
  EXPECT_EQ(d.what, "training loss");
  EXPECT_EQ(d.value, -kInf);
  ASSERT_TRUE(d.last_finite);
  EXPECT_EQ(*d.last_finite, 1e30);
  EXPECT_EQ(d.last_finite_iteration, 2);
}

TEST(DivergenceWatch, AnEvaluationShowsItWhenTheRoundsDidNot) {
  DivergenceWatch watch;
  watch.round(2, 50, 0.7);
  watch.evaluated(2, 50, "validation loss", kInf);
  ASSERT_TRUE(watch.divergence());
  EXPECT_EQ(watch.divergence()->what, "validation loss");
  EXPECT_EQ(watch.divergence()->iteration, 50);
  EXPECT_EQ(divergence_json(watch.divergence())["value"], "inf");  // JSON has no infinity
  EXPECT_TRUE(divergence_json(std::nullopt).is_null());
}

TEST(DivergenceWatch, TheLineSaysWhereAndWhatToTryForThisJob) {
  DivergenceWatch watch;
  watch.round(3, 71, 4e36);
  watch.round(3, 72, kNan);
  JobSpec spec;
  spec.epochs = 5;
  spec.learn_rate = 0.05;
  const std::string line = divergence_line(*watch.divergence(), spec, /*stopping=*/true);
  for (const char* part :
       {"nan at iteration 72 (epoch 3 of 5)", "4e+36, at iteration 71", "--learn_rate (now 0.05)",
        "--normalize zscore", "--momentum (now 0.9)", "--on_divergence continue"}) {
    EXPECT_NE(line.find(part), std::string::npos) << part << " not in: " << line;
  }
  EXPECT_EQ(line.find("--codec"), std::string::npos) << line;  // plain: nothing to try there
  EXPECT_EQ(divergence_status(*watch.divergence(), spec).rfind("diverged: training loss nan", 0),
            0u);
  spec.normalize = "zscore";
  spec.momentum = 0;
  spec.codec = "qsgd";
  const std::string other = divergence_line(*watch.divergence(), spec, /*stopping=*/false);
  EXPECT_EQ(other.find("--normalize"), std::string::npos) << other;
  EXPECT_EQ(other.find("--momentum"), std::string::npos) << other;
  EXPECT_NE(other.find("--codec qsgd"), std::string::npos) << other;
  EXPECT_NE(other.find("carrying on"), std::string::npos) << other;
}

TEST(JobSpec, OnDivergenceIsStopOrContinueAndNotPartOfTheJob) {
  JobSpec a;
  EXPECT_EQ(a.on_divergence, "stop");
  JobSpec b = a;
  b.on_divergence = "continue";
  EXPECT_NO_THROW(b.validate());
  EXPECT_EQ(job_config_hash(a), job_config_hash(b));  // a checkpoint resumes under either
  nlohmann::json j = b;
  EXPECT_EQ(j["on_divergence"], "continue");
  JobSpec c;
  from_json(j, c);
  EXPECT_EQ(c.on_divergence, "continue");
  b.on_divergence = "ignore";
  try {
    b.validate();
    ADD_FAILURE() << "--on_divergence ignore accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--on_divergence ignore"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace psgd
