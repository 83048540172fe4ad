// Where the strategies apply updates with the job's optimiser (core/optimizer.h): the
// asynchronous server weights SGD's gradient by 1/n but an adaptive optimiser's rate (its step
// does not scale with the gradient), and momentum correction on the workers is SGD's only.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "codecs/factory.h"
#include "core/error.h"
#include "psgd/asgd.h"
#include "psgd/factory.h"
#include "tests/psgd/role_sim.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;

// The parameters after an asgd server of `n` workers applied one gradient g = 2 everywhere.
std::vector<float> after_one_async_update(const std::string& optimizer, int n) {
  StrategyJob job = testing::job("asgd", n, 0.1);
  job.optimizer = optimizer;
  job.validate();
  const Schedule schedule = make_schedule(job, 1000);
  std::vector<float> params(4, 1.0f);
  ManualClock clock;
  auto server = make_server_role(job, schedule,
                                 ServerContext{.parameters = params,
                                               .optimizer = optimizer_spec(job, schedule),
                                               .uplink = uplink_codec_spec(job, 0),
                                               .clock = &clock});
  Outbox out;
  server->on_start(out);
  const std::vector<float> g(4, 2.0f);
  auto codec = make_codec(CodecSpec{});
  server->on_message(
      0, Gradient{.iteration = 0, .values = codec->encode(g), .loss = 1, .samples = 8}, out);
  return params;
}

TEST(AsyncOptimizers, SgdWeightsTheGradientAdaptiveOptimisersTheRate) {
  // SGD: p -= lr * g / n.
  for (float p : after_one_async_update("sgd", 4))
    EXPECT_FLOAT_EQ(p, 1.0f - 0.1f * 2.0f / 4.0f);
  // Adam's first step is lr * sign(g) whatever g's scale: weighting g by 1/n would leave it a
  // full step; the rate is weighted instead, lr / n.
  for (float p : after_one_async_update("adam", 4))
    EXPECT_NEAR(p, 1.0f - 0.1f / 4.0f, 1e-6);
  for (float p : after_one_async_update("rmsprop", 2))  // lr * g / sqrt((1 - alpha) g^2) / n
    EXPECT_NEAR(p, 1.0f - 0.1f / std::sqrt(0.01f) / 2.0f, 1e-5);
}

TEST(AsyncOptimizers, MomentumCorrectionIsSgdsOnly) {
  // asgd puts SGD's momentum on the workers by default; Adam keeps its moments on the server.
  StrategyJob job = testing::job("asgd", 4, 0.1, 0.9);
  EXPECT_TRUE(momentum_at_worker(job));
  job.optimizer = "adam";
  job.momentum = 0;
  EXPECT_FALSE(momentum_at_worker(job));
  EXPECT_EQ(uplink_codec_spec(job, 1).momentum, 0.0f);
  job.momentum_at = "worker";
  EXPECT_THROW(job.validate(), ConfigError);
  // Error feedback would move SGD's momentum to the workers; Adam's stays on the server.
  StrategyJob sign = testing::job("ssgd", 4, 0.001);
  sign.codec = "sign";
  sign.optimizer = "adam";
  sign.momentum = 0;
  sign.validate();
  EXPECT_FALSE(momentum_at_worker(sign));
}

}  // namespace
}  // namespace psgd
