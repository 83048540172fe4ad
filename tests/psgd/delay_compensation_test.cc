// DC-ASGD (psgd/delay_compensation.h): the compensation formula on hand-computed vectors, its
// passage through worker-side momentum, and the asgd roles with it (tests/psgd/role_sim.h).
#include "psgd/delay_compensation.h"

#include <gtest/gtest.h>

#include <cmath>

#include "codecs/momentum.h"
#include "codecs/plain.h"
#include "core/error.h"
#include "tests/psgd/role_sim.h"

namespace psgd {
namespace {

using testing::job;
using testing::RoleSim;

const std::vector<float> kStale{1.0f, 2.0f, 3.0f, -1.0f};
const std::vector<float> kCurrent{1.5f, 1.0f, 3.0f, -0.5f};  // w - w_stale = .5, -1, 0, .5

TEST(DelayCompensation, ConstantLambdaAddsLambdaTimesGSquaredTimesTheDrift) {
  DelayCompensation dc(2, 4, {.lambda = 0.1f, .adaptive = false});
  dc.sent(1, kStale);
  dc.sent(0, kCurrent);  // another worker's parameters do not matter
  std::vector<float> g{0.5f, -1.0f, 2.0f, 0.25f};
  dc.compensate(1, g, kCurrent);
  // g + 0.1 * g^2 * (w - w_stale):
  //   0.5 + 0.1*0.25*0.5 = 0.5125;  -1 + 0.1*1*(-1) = -1.1;  2 + 0 = 2;  0.25 + 0.1*0.0625*0.5
  const std::vector<float> want{0.5125f, -1.1f, 2.0f, 0.253125f};
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(g[i], want[i], 1e-6f) << i;
  // Worker 0 computed on the current parameters: nothing to compensate.
  std::vector<float> g0{0.5f, -1.0f, 2.0f, 0.25f};
  dc.compensate(0, g0, kCurrent);
  EXPECT_EQ(g0, (std::vector<float>{0.5f, -1.0f, 2.0f, 0.25f}));
}

TEST(DelayCompensation, AdaptiveLambdaIsDividedByTheRootOfTheMeanSquare) {
  DelayCompensation dc(1, 4, {.lambda = 2.0f, .adaptive = true});
  dc.sent(0, kStale);
  // First gradient: MeanSquare = 0.05 g^2 = (0.0125, 0.05, 0.2, 0.003125);
  // g + 2 / sqrt(MS + 1e-7) * g^2 * (w - w_stale), e.g. -1 + 2/sqrt(0.0500001) * 1 * (-1).
  std::vector<float> g{0.5f, -1.0f, 2.0f, 0.25f};
  dc.compensate(0, g, kCurrent);
  const std::vector<float> want1{2.7360590f, -9.9442630f, 2.0f, 1.3680161f};
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(g[i], want1[i], 1e-5f) << i;
  // Second: MS = 0.95 MS + 0.05 g^2 = (0.061875, 0.0975, 0.24, 0.01546875).
  std::vector<float> g2{1.0f, 1.0f, -1.0f, 0.5f};
  dc.compensate(0, g2, kCurrent);
  const std::vector<float> want2{5.0201480f, -5.4051229f, -1.0f, 2.5100691f};
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(g2[i], want2[i], 1e-5f) << i;
}

// With worker-side momentum the server receives momentum directions; what it applies must be the
// direction the worker would have sent had its momentum been fed the compensated gradients.
TEST(DelayCompensation, WithWorkerMomentumEachGradientIsCompensatedOnceAndCarriedByMomentum) {
  for (const bool nesterov : {false, true}) {
    for (const bool adaptive : {false, true}) {
      const float m = 0.5f;
      const std::size_t size = 3;
      MomentumCorrectionCodec worker(std::make_unique<PlainCodec>(), m, nesterov);
      PlainCodec decoder;
      DelayCompensation dc(1, size,
                           {.lambda = adaptive ? 0.5f : 0.3f,
                            .adaptive = adaptive,
                            .momentum = m,
                            .nesterov = nesterov});
      // The reference: the same compensation on the raw gradients (momentum 0), then momentum.
      DelayCompensation raw(1, size, {.lambda = adaptive ? 0.5f : 0.3f, .adaptive = adaptive});
      std::vector<float> buffer(size, 0.0f);
      for (int t = 0; t < 5; ++t) {
        std::vector<float> stale(size), current(size), g(size);
        for (std::size_t i = 0; i < size; ++i) {
          stale[i] = 0.1f * static_cast<float>(t) - 0.2f * static_cast<float>(i);
          current[i] = stale[i] + 0.3f * static_cast<float>((t + i) % 3) - 0.25f;
          g[i] = std::sin(1.0f + static_cast<float>(3 * t + i));
        }
        dc.sent(0, stale);
        raw.sent(0, stale);
        std::vector<float> received(size);
        decoder.decode(worker.encode(g), received);
        dc.compensate(0, received, current);

        std::vector<float> compensated = g;
        raw.compensate(0, compensated, current);
        std::vector<float> want(size);
        for (std::size_t i = 0; i < size; ++i) {
          buffer[i] = m * buffer[i] + compensated[i];
          want[i] = nesterov ? compensated[i] + m * buffer[i] : buffer[i];
        }
        for (std::size_t i = 0; i < size; ++i)
          EXPECT_NEAR(received[i], want[i], 1e-5f)
              << "nesterov " << nesterov << " adaptive " << adaptive << " t " << t << " i " << i;
      }
    }
  }
}

TEST(DelayCompensation, ARestartedWorkerStartsItsMomentumAfresh) {
  const float m = 0.9f;
  DelayCompensation dc(1, 1, {.lambda = 1.0f, .adaptive = false, .momentum = m});
  const std::vector<float> stale{0.0f}, current{1.0f};
  dc.sent(0, stale);
  std::vector<float> u{2.0f};  // first direction: g = 2, c = 1 * 4 * 1 = 4
  dc.compensate(0, u, current);
  EXPECT_FLOAT_EQ(u[0], 6.0f);
  dc.restart(0);
  std::vector<float> fresh{1.0f};  // a new worker's first direction is its gradient, 1: c = 1
  dc.compensate(0, fresh, current);
  EXPECT_FLOAT_EQ(fresh[0], 2.0f);
}

// --- the asgd roles

StrategyJob dc_job(int n, double momentum, double lambda, const std::string& mode) {
  StrategyJob spec = job("asgd", n, 0.1, momentum);
  spec.delay_compensation = lambda;
  spec.delay_compensation_mode = mode;
  return spec;
}

// With lambda 0 (the default, whatever the mode) asgd's trajectory is the plain one, bit for bit:
// workers taking turns with momentum on the workers, against the update written out here.
TEST(AsgdDelayCompensation, LambdaZeroLeavesTheTrajectoryUnchangedBitForBit) {
  const int n = 3;
  const float lr = 0.1f, m = 0.9f;
  for (const std::string mode : {"adaptive", "constant"}) {
    RoleSim sim(dc_job(n, m, 0.0, mode),
                {.node_count = n, .iterations_per_epoch = 30, .epochs = 1});
    sim.start();
    std::vector<float> ref = sim.initial;
    std::vector<std::vector<float>> sent(n, sim.initial), buffer(n);
    std::vector<int> steps(n, 0);
    for (int w = 0; w < n; ++w) {  // everyone computes on version 0
      sim.run({1, w});
      sim.run({2, w});
    }
    for (int k = 0; k < 30; ++k) {
      const int w = (k * 2) % n;  // arrival order 0, 2, 1, 0, ...: staleness n - 1 each time
      const auto g = sim.learners[w]->gradient_at(sent[w], ++steps[w]);
      auto& u = buffer[w];
      if (u.empty()) {
        u = g;
      } else {
        for (std::size_t i = 0; i < u.size(); ++i)
          u[i] = m * u[i] + g[i];
      }
      for (std::size_t i = 0; i < ref.size(); ++i)
        ref[i] -= lr * ((1.0f / n) * u[i]);
      sim.run({0, w});
      ASSERT_EQ(sim.params, ref) << mode << " update " << k;
      if (sim.server->finished()) break;
      sent[w] = sim.params;
      sim.run({1, w});
      sim.run({2, w});
    }
    EXPECT_TRUE(sim.server->finished());
  }
}

// One worker always computes on the current parameters (staleness 0): compensating is a no-op,
// with momentum on the workers and on the server, in both modes.
TEST(AsgdDelayCompensation, WithOneWorkerCompensationIsANoOp) {
  for (const std::string momentum_at : {"worker", "server"}) {
    for (const std::string mode : {"adaptive", "constant"}) {
      StrategyJob off = dc_job(1, 0.9, 0.0, mode);
      StrategyJob on = dc_job(1, 0.9, 50.0, mode);
      off.momentum_at = on.momentum_at = momentum_at;
      const Schedule schedule{.node_count = 1, .iterations_per_epoch = 40, .epochs = 1};
      RoleSim a(off, schedule), b(on, schedule);
      a.start();
      b.start();
      ASSERT_TRUE(a.run_random(3));
      ASSERT_TRUE(b.run_random(3));
      EXPECT_EQ(a.params, b.params) << momentum_at << " " << mode;
      EXPECT_NE(a.params, a.initial);
    }
  }
}

// Two workers compute on version 0; the second to arrive is applied at version 1, compensated:
// w2 = w1 - lr/2 * (g1 + lambda * g1^2 * (w1 - w0)).
TEST(AsgdDelayCompensation, AStaleGradientIsCompensatedForTheDriftSinceItsWorkerWasSent) {
  const int n = 2;
  const float lr = 0.1f, lambda = 0.5f;
  RoleSim sim(dc_job(n, 0.0, lambda, "constant"),
              {.node_count = n, .iterations_per_epoch = 10, .epochs = 1});
  sim.start();
  for (int w = 0; w < n; ++w) {
    sim.run({1, w});
    sim.run({2, w});
  }
  const auto g0 = sim.learners[0]->gradient_at(sim.initial, 1);
  const auto g1 = sim.learners[1]->gradient_at(sim.initial, 1);
  sim.run({0, 0});  // staleness 0: applied as is
  std::vector<float> w1 = sim.initial;
  for (std::size_t i = 0; i < w1.size(); ++i)
    w1[i] -= lr / n * g0[i];
  for (std::size_t i = 0; i < w1.size(); ++i)
    EXPECT_NEAR(sim.params[i], w1[i], 1e-6f) << i;
  sim.run({0, 1});  // staleness 1
  EXPECT_EQ(sim.reports.workers.back().second.staleness, 1);
  bool differs = false;
  for (std::size_t i = 0; i < w1.size(); ++i) {
    const float drift = w1[i] - sim.initial[i];
    const float want = w1[i] - lr / n * (g1[i] + lambda * g1[i] * g1[i] * drift);
    EXPECT_NEAR(sim.params[i], want, 1e-5f) << i;
    differs = differs || std::abs(lambda * g1[i] * g1[i] * drift) > 1e-3f;
  }
  EXPECT_TRUE(differs) << "the example must exercise the compensation";
}

TEST(AsgdDelayCompensation, ValidationAndRefusedCombinations) {
  auto error_of = [](const StrategyJob& s) -> std::string {
    try {
      s.validate();
      return "no error";
    } catch (const ConfigError& e) {
      return e.what();
    }
  };
  StrategyJob s = dc_job(4, 0.9, 2.0, "adaptive");
  EXPECT_EQ(error_of(s), "no error");
  s.delay_compensation_mode = "hessian";
  EXPECT_NE(error_of(s).find("--delay_compensation_mode hessian"), std::string::npos);
  s.delay_compensation_mode = "constant";
  s.delay_compensation = -1;
  EXPECT_NE(error_of(s).find("--delay_compensation -1"), std::string::npos);
  s.delay_compensation = NAN;
  EXPECT_NE(error_of(s).find("--delay_compensation"), std::string::npos);
  s.delay_compensation = 0.04;
  s.psgd = "ssp";
  EXPECT_NE(error_of(s).find("--delay_compensation applies to --psgd asgd only"),
            std::string::npos);

  // topk masks the workers' momentum: the server could not recover their gradients. Refused
  // when the job is validated, before anything starts.
  StrategyJob topk = dc_job(2, 0.9, 2.0, "adaptive");
  topk.codec = "topk";
  EXPECT_NE(
      error_of(topk).find("--delay_compensation with --codec topk needs --momentum_at server"),
      std::string::npos)
      << error_of(topk);
  topk.momentum_at = "server";
  EXPECT_EQ(error_of(topk), "no error");
  const Schedule schedule{.node_count = 2, .iterations_per_epoch = 4, .epochs = 1};
  EXPECT_NO_THROW(RoleSim(topk, schedule));
}

}  // namespace
}  // namespace psgd
