// --momentum_at: momentum on the server's SGD, or on the workers before the codec (momentum
// correction, codecs/momentum.h).
#include <gtest/gtest.h>

#include <cmath>

#include "codecs/error_feedback.h"
#include "codecs/momentum.h"
#include "codecs/plain.h"
#include "codecs/sign.h"
#include "codecs/topk.h"
#include "core/error.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

using testing::job;
using testing::RoleSim;

TEST(MomentumAt, AutoIsWorkerForAsgdAndSspAndWhenErrorFeedbackIsOn) {
  for (const char* psgd : {"asgd", "ssp"}) {
    StrategyJob a = job(psgd, 4, 0.05, 0.9);
    EXPECT_TRUE(momentum_at_worker(a)) << psgd;  // plain, no error feedback
    EXPECT_FLOAT_EQ(optimizer_spec(a, Schedule{}).momentum, 0.0f);
    EXPECT_FLOAT_EQ(uplink_codec_spec(a, 1).momentum, 0.9f);
    a.momentum_at = "server";
    EXPECT_FALSE(momentum_at_worker(a)) << psgd;
    EXPECT_FLOAT_EQ(optimizer_spec(a, Schedule{}).momentum, 0.9f);
  }
  StrategyJob s = job("ssgd", 4, 0.05, 0.9);
  EXPECT_FALSE(momentum_at_worker(s));  // plain
  s.codec = "sign";
  EXPECT_TRUE(momentum_at_worker(s));
  EXPECT_FLOAT_EQ(optimizer_spec(s, Schedule{}).momentum, 0.0f);  // the server's SGD has none
  EXPECT_FLOAT_EQ(uplink_codec_spec(s, 2).momentum, 0.9f);
  s.error_feedback = "off";
  EXPECT_FALSE(momentum_at_worker(s));
  EXPECT_FLOAT_EQ(optimizer_spec(s, Schedule{}).momentum, 0.9f);
  EXPECT_FLOAT_EQ(uplink_codec_spec(s, 2).momentum, 0.0f);
  s.error_feedback = "auto";
  s.codec = "topk";
  s.momentum_at = "server";
  EXPECT_FALSE(momentum_at_worker(s));
  s.psgd = "local_sgd";
  s.momentum_at = "auto";
  EXPECT_FALSE(momentum_at_worker(s));
  s.momentum_at = "worker";
  EXPECT_THROW(s.validate(), ConfigError);
  // allreduce's workers apply the update in their own optimiser, momentum included; "worker"
  // would have taken it out of that optimiser with no codec to put it back (it was dropped).
  s.psgd = "allreduce";
  s.codec = "plain";
  s.momentum_at = "auto";
  EXPECT_FALSE(momentum_at_worker(s));
  s.momentum_at = "worker";
  try {
    s.validate();
    ADD_FAILURE() << "--momentum_at worker with --psgd allreduce was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("its workers already run their own optimiser"),
              std::string::npos)
        << e.what();
  }
  s.psgd = "ssgd";
  s.momentum_at = "sometimes";
  EXPECT_THROW(s.validate(), ConfigError);
}

// Momentum is linear: with an exact codec and synchronous rounds, the mean of the workers'
// momentum buffers is the server's momentum buffer of the mean gradient, so both placements
// train the same model (up to float rounding), in any delivery order.
class SamePlacement : public ::testing::TestWithParam<bool> {};

TEST_P(SamePlacement, WorkerMomentumEqualsServerMomentumWithAnExactCodec) {
  const bool nesterov = GetParam();
  const Schedule schedule{.node_count = 3, .iterations_per_epoch = 6, .epochs = 2};
  StrategyJob s = job("ssgd", 3, 0.02, 0.9);  // no weight decay: it stays on the server
  s.nesterov = nesterov;
  s.momentum_at = "server";
  RoleSim server_side(s, schedule);
  s.momentum_at = "worker";
  RoleSim worker_side(s, schedule);
  server_side.start();
  worker_side.start();
  ASSERT_TRUE(server_side.run_random(1));
  ASSERT_TRUE(worker_side.run_random(2));
  bool moved = false;
  for (std::size_t i = 0; i < RoleSim::kSize; ++i) {
    EXPECT_NEAR(worker_side.params[i], server_side.params[i],
                1e-5f * (1.0f + std::fabs(server_side.params[i])))
        << i;
    moved |= std::fabs(server_side.params[i] - server_side.initial[i]) > 0.1f;
  }
  EXPECT_TRUE(moved);
}

INSTANTIATE_TEST_SUITE_P(Nesterov, SamePlacement, ::testing::Bool());

// With error feedback inside, nothing is lost: the decoded payloads plus the final residual add
// up to the sum of the momentum buffers u_t = m u_{t-1} + g_t.
TEST(MomentumCorrection, ErrorFeedbackConservesTheMomentumBuffers) {
  const float m = 0.9f;
  auto ef = std::make_unique<ErrorFeedbackCodec>(std::make_unique<SignCodec>(4));
  const ErrorFeedbackCodec* ef_view = ef.get();
  MomentumCorrectionCodec codec(std::move(ef), m);
  const std::size_t n = 10;
  std::vector<double> sent(n, 0.0), expected(n, 0.0), u(n, 0.0);
  std::vector<float> g(n), decoded(n);
  for (int t = 0; t < 20; ++t) {
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = std::sin(0.7f * t + static_cast<float>(i)) * (1.0f + static_cast<float>(i));
      u[i] = m * u[i] + g[i];
      expected[i] += u[i];
    }
    const Payload p = codec.encode(g);
    codec.decode(p, decoded);
    for (std::size_t i = 0; i < n; ++i)
      sent[i] += decoded[i];
    for (std::size_t i = 0; i < n; ++i)
      EXPECT_NEAR(codec.momentum_buffer()[i], u[i], 1e-3 * (1 + std::fabs(u[i])));
  }
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_NEAR(sent[i] + ef_view->residual()[i], expected[i], 1e-3 * (1 + std::fabs(expected[i])));
  EXPECT_GE(codec.last_stats().compression_error, 0.0);
}

TEST(MomentumCorrection, FirstStepSendsTheGradientAndWireFormatIsTheInnerCodecs) {
  MomentumCorrectionCodec codec(std::make_unique<PlainCodec>(), 0.5f);
  const std::vector<float> g{1, -2, 3};
  const Payload p1 = codec.encode(g);
  std::vector<float> out(3);
  PlainCodec().decode(p1, out);
  EXPECT_EQ(out, g);
  const Payload p2 = codec.encode(g);
  PlainCodec().decode(p2, out);
  EXPECT_EQ(out, (std::vector<float>{1.5f, -3.0f, 4.5f}));
}

TEST(MomentumCorrection, MaskingZeroesTheMomentumOfTheCoordinatesSent) {
  // DGC's momentum factor masking around error-feedback topk: what was sent leaves neither
  // momentum nor residual behind; the rest keeps accumulating.
  const float m = 0.5f;
  auto ef = std::make_unique<ErrorFeedbackCodec>(std::make_unique<TopkCodec>(0.25));
  const ErrorFeedbackCodec* inner = ef.get();
  MomentumCorrectionCodec codec(std::move(ef), m, false, /*mask_sent=*/true);
  const std::vector<float> g{1, -8, 2, 0.5f};
  codec.encode(g);  // k = 1: sends -8
  EXPECT_EQ(std::vector<float>(codec.momentum_buffer().begin(), codec.momentum_buffer().end()),
            (std::vector<float>{1, 0, 2, 0.5f}));
  EXPECT_EQ(inner->residual()[1], 0.0f);
  codec.encode(g);  // u = (1.5, -8, 3, 0.75), p = u + e = (2.5, -8, 5, 1.25): sends -8 again
  EXPECT_EQ(std::vector<float>(codec.momentum_buffer().begin(), codec.momentum_buffer().end()),
            (std::vector<float>{1.5f, 0, 3, 0.75f}));
  MomentumCorrectionCodec unmasked(std::make_unique<TopkCodec>(0.25), m);
  unmasked.encode(g);
  EXPECT_EQ(unmasked.momentum_buffer()[1], -8.0f);
}

}  // namespace
}  // namespace psgd
