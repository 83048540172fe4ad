#include "psgd/ssgd.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "codecs/factory.h"
#include "core/error.h"
#include "core/optimizer.h"
#include "core/sgd.h"
#include "psgd/factory.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;
using testing::ToyLearner;

struct Recorder final : ServerObserver {
  void on_worker(NodeId w, const WorkerReport& r) { reports.emplace_back(w, r); }
  void on_round(const RoundStats& s) { rounds.push_back(s); }
  std::vector<std::pair<NodeId, WorkerReport>> reports;
  std::vector<RoundStats> rounds;
};

// n workers and a server, wired by hand: every message is delivered in the order given.
struct Harness {
  static constexpr std::size_t kSize = 5;

  Harness(int n, SgdOptions sgd, int epochs = 1, std::int64_t ipe = 3)
      : initial(kSize), params(kSize) {
    for (std::size_t i = 0; i < kSize; ++i)
      initial[i] = params[i] = 0.1f * i - 0.2f;
    server = std::make_unique<SsgdServer>(
        Schedule{.node_count = n, .iterations_per_epoch = ipe, .epochs = epochs},
        ServerContext{.parameters = params,
                      .optimizer = sgd_spec(sgd),
                      .clock = &clock,
                      .observer = &recorder});
    for (int w = 0; w < n; ++w) {
      std::vector<float> target(kSize);
      for (std::size_t i = 0; i < kSize; ++i)
        target[i] = static_cast<float>(w + 1) * (i + 1);
      learners.push_back(std::make_unique<ToyLearner>(target, kSize));
      workers.push_back(std::make_unique<SsgdWorker>(
          WorkerContext{.learner = learners.back().get(), .clock = &clock}));
    }
  }

  // Delivers the server's messages, lets every worker compute, and returns their gradients.
  std::vector<Envelope> deliver_to_workers(const Outbox& from_server) {
    std::vector<Envelope> up;
    for (const auto& env : from_server) {
      Outbox out;
      auto action = workers[env.to]->on_message(*env.message, out);
      EXPECT_TRUE(action.compute);
      action = workers[env.to]->compute_step(out);
      EXPECT_FALSE(action.compute);
      for (auto& e : out) {
        EXPECT_EQ(e.to, kServer);
        up.push_back({env.to, e.message});  // remember the sender in `to`
      }
    }
    return up;
  }

  ManualClock clock;
  Recorder recorder;
  std::vector<float> initial;
  std::vector<float> params;
  std::unique_ptr<SsgdServer> server;
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<SsgdWorker>> workers;
};

TEST(Ssgd, StartBroadcastsTheSameParametersToEveryWorker) {
  Harness h(3, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  ASSERT_EQ(out.size(), 3u);
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(out[w].to, w);
    EXPECT_EQ(out[w].message, out[0].message);  // one shared message, encoded once
  }
  h.deliver_to_workers(out);
  for (const auto& l : h.learners) {
    EXPECT_EQ(std::vector<float>(l->parameters().begin(), l->parameters().end()), h.initial);
  }
}

TEST(Ssgd, ServerUpdateEqualsOneSgdStepOnTheMeanGradient) {
  const int n = 4;
  const float lr = 0.05f;
  Harness h(n, {.learning_rate = lr});
  Outbox out;
  h.server->on_start(out);
  auto up = h.deliver_to_workers(out);
  ASSERT_EQ(up.size(), static_cast<std::size_t>(n));

  std::vector<float> mean(Harness::kSize, 0.0f);
  for (int w = 0; w < n; ++w) {
    auto g = h.learners[w]->gradient_at(h.initial, 1);
    for (std::size_t i = 0; i < mean.size(); ++i)
      mean[i] += g[i] / n;
  }
  Outbox down;
  for (std::size_t k = 0; k < up.size(); ++k) {
    h.server->on_message(up[k].to, *up[k].message, down);
    EXPECT_EQ(down.empty(), k + 1 < up.size()) << "replies only when the round is complete";
  }
  for (std::size_t i = 0; i < mean.size(); ++i) {
    EXPECT_NEAR(h.params[i], h.initial[i] - lr * mean[i], 1e-6) << i;
  }
  EXPECT_EQ(h.server->iteration(), 1);
  ASSERT_EQ(h.recorder.rounds.size(), 1u);
  EXPECT_EQ(h.recorder.rounds[0].gradients, n);
  EXPECT_EQ(h.recorder.rounds[0].samples, 4 * n);
  EXPECT_EQ(h.recorder.reports.size(), static_cast<std::size_t>(n));
  // The new parameters go to every worker.
  ASSERT_EQ(down.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(std::get<Params>(*down[0].message).iteration, 1);
}

TEST(Ssgd, TrajectoryMatchesSingleProcessMomentumSgdInAnyArrivalOrder) {
  const int n = 3;
  const SgdOptions sgd{.learning_rate = 0.02f, .momentum = 0.9f, .weight_decay = 0.01f};
  Harness h(n, sgd, /*epochs=*/2, /*ipe=*/3);

  // Reference: the same steps in one process.
  std::vector<float> ref = h.initial;
  FlatSgd reference(sgd, ref.size());
  for (int step = 1; step <= 6; ++step) {
    std::vector<float> mean(ref.size(), 0.0f);
    for (int w = 0; w < n; ++w) {
      auto g = h.learners[w]->gradient_at(ref, step);
      for (std::size_t i = 0; i < ref.size(); ++i)
        mean[i] += g[i] / n;
    }
    reference.step(ref, mean);
  }

  Outbox out;
  h.server->on_start(out);
  int rounds = 0;
  while (!out.empty()) {
    auto up = h.deliver_to_workers(out);
    out.clear();
    std::reverse(up.begin(), up.end());  // arrival order must not matter
    if (rounds % 2) std::rotate(up.begin(), up.begin() + 1, up.end());
    for (auto& e : up)
      h.server->on_message(e.to, *e.message, out);
    ++rounds;
  }
  EXPECT_TRUE(h.server->finished());
  EXPECT_EQ(rounds, 6);
  for (std::size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(h.params[i], ref[i], 1e-5) << i;
}

TEST(Ssgd, ProtocolViolationsAreRefused) {
  Harness h(2, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  auto up = h.deliver_to_workers(out);
  Outbox down;
  h.server->on_message(0, *up[0].message, down);
  EXPECT_THROW(h.server->on_message(0, *up[0].message, down), ProtocolError);  // duplicate
  EXPECT_THROW(h.server->on_message(7, *up[1].message, down), ProtocolError);  // unknown worker
  Gradient stale = std::get<Gradient>(*up[1].message);
  stale.iteration = 5;
  EXPECT_THROW(h.server->on_message(1, stale, down), ProtocolError);    // wrong iteration
  EXPECT_THROW(h.server->on_message(1, Hello{}, down), ProtocolError);  // wrong type
  // A worker refuses parameters older than what it has.
  Outbox ignored;
  EXPECT_THROW(h.workers[0]->on_message(*out[0].message, ignored), ProtocolError);
}

TEST(Ssgd, WorkerReportsItsPhaseTimes) {
  Harness h(1, {.learning_rate = 0.1f});
  Outbox out;
  h.server->on_start(out);
  Outbox up;
  h.workers[0]->on_message(*out[0].message, up);
  h.workers[0]->compute_step(up);
  h.clock.t += 2.0;  // the worker waits two seconds for the next parameters
  Outbox down;
  h.server->on_message(0, *up[0].message, down);
  Outbox up2;
  h.workers[0]->on_message(*down[0].message, up2);
  h.workers[0]->compute_step(up2);
  EXPECT_DOUBLE_EQ(std::get<Gradient>(*up2[0].message).times.wait_s, 2.0);
}

// The parameters a closing round sends are encoded into the previous reply's buffer once no link
// holds that reply any more; while one does, the new reply gets its own buffer and the old one is
// left as it was sent.
TEST(Ssgd, RoundRepliesReuseTheLastReplysBufferOnlyOnceItIsReleased) {
  Harness h(2, SgdOptions{.learning_rate = 0.1f}, 1, 5);
  auto bytes_of = [](const std::vector<float>& v) {
    const auto* b = reinterpret_cast<const std::uint8_t*>(v.data());
    return std::vector<std::uint8_t>(b, b + v.size() * sizeof(float));
  };
  auto close = [&](const std::vector<Envelope>& gradients) {
    Outbox replies;
    for (const auto& g : gradients)
      h.server->on_message(g.to, *g.message, replies);
    EXPECT_EQ(replies.size(), 2u);
    return replies;
  };
  auto values = [](const Outbox& out) -> const Payload& {
    return std::get<Params>(*out[0].message).values;
  };
  Outbox down;
  h.server->on_start(down);
  Outbox first = close(h.deliver_to_workers(down));
  const std::uint8_t* buffer = values(first).bytes.data();
  const auto first_bytes = bytes_of(h.params);
  EXPECT_EQ(values(first).bytes, first_bytes);

  // Still held (a link has not written it): the next reply may not touch it.
  Outbox second = close(h.deliver_to_workers(first));
  EXPECT_EQ(values(first).bytes, first_bytes);
  EXPECT_NE(values(second).bytes.data(), buffer);
  EXPECT_EQ(values(second).bytes, bytes_of(h.params));
  EXPECT_NE(bytes_of(h.params), first_bytes);

  // Released by every link: the next reply is encoded into its buffer, with the new parameters.
  first.clear();
  const std::uint8_t* second_buffer = values(second).bytes.data();
  const auto gradients = h.deliver_to_workers(second);
  second.clear();
  // Had the buffer been freed with its reply, malloc would hand it to this block of its size.
  const std::vector<std::uint8_t> decoy(first_bytes.size(), 1);
  Outbox third = close(gradients);
  EXPECT_NE(decoy.data(), second_buffer);
  EXPECT_EQ(values(third).bytes.data(), second_buffer);
  EXPECT_EQ(values(third).bytes, bytes_of(h.params));
  EXPECT_EQ(std::get<Params>(*third[0].message).iteration, 3);
}

// The server's mean gradient is summed block by block (psgd/common.cc); it must stay bit for bit
// the element-wise ((p0 + p1) + ...) * (1 / count) that pinned runs were recorded with, at every
// block boundary and tail, with values of very different magnitudes (where the order of the
// additions shows in the last bits).
TEST(MeanOf, BitIdenticalToTheSumInPartOrderThenOneScaling) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (const std::size_t n : {std::size_t{1}, std::size_t{8191}, std::size_t{8192},
                              std::size_t{3 * 8192 + 17}, std::size_t{203530}}) {
    for (std::size_t count = 2; count <= 5; ++count) {
      std::vector<std::vector<float>> data(count, std::vector<float>(n));
      for (auto& part : data) {
        for (float& v : part)
          v = std::ldexp(mantissa(rng), exponent(rng));
      }
      std::vector<std::span<const float>> parts(data.begin(), data.end());
      std::vector<float> expected(n);
      const float inv = 1.0f / static_cast<float>(count);
      for (std::size_t i = 0; i < n; ++i) {
        float s = data[0][i];
        for (std::size_t k = 1; k < count; ++k)
          s += data[k][i];
        expected[i] = s * inv;
      }
      std::vector<float> scratch(n, -1.0f);
      const auto mean = mean_of(parts, scratch);
      ASSERT_EQ(mean.data(), scratch.data());
      EXPECT_EQ(std::memcmp(mean.data(), expected.data(), n * sizeof(float)), 0)
          << n << " values, " << count << " parts";
      // The same sum in steps, as the ssgd server grows it while the gradients arrive.
      std::vector<float> steps(n, -1.0f);
      for (std::size_t k = 0; k < count; ++k)
        add_to_sum(steps, parts[k], k == 0);
      scale(steps, inv);
      EXPECT_EQ(std::memcmp(steps.data(), expected.data(), n * sizeof(float)), 0)
          << n << " values, " << count << " parts, in steps";
    }
  }
  // One part is returned as it is: no copy.
  std::vector<float> one(10, 2.0f), scratch(10);
  const std::vector<std::span<const float>> single{one};
  EXPECT_EQ(mean_of(single, scratch).data(), one.data());
}

// The server adds each gradient to the round's sum as soon as those of the workers before it are
// in. Whatever the arrival order, and with backup workers (--wait_for) whichever workers the round
// closes with, the update must be bit for bit the step on mean_of of the round's gradients in
// worker order. Gradients of very different magnitudes make any other order show in the last bits.
// --wait_for 1 (as one worker) steps from the round's one gradient where it lies, without the sum.
TEST(Ssgd, TheRoundsSumIsBitIdenticalInEveryArrivalOrder) {
  constexpr int n = 4;
  constexpr std::size_t size = 3 * 1024 + 5;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<std::vector<float>> gradients(n, std::vector<float>(size));
  for (auto& g : gradients) {
    for (float& v : g)
      v = std::ldexp(mantissa(rng), exponent(rng));
  }
  std::vector<float> initial(size);
  for (std::size_t i = 0; i < size; ++i)
    initial[i] = 0.001f * static_cast<float>(i % 97) - 0.05f;
  const SgdOptions sgd{.learning_rate = 0.1f, .momentum = 0.9f};
  auto plain = make_codec(CodecSpec{});

  for (const int wait_for : {n, n - 1, 1}) {
    std::array<int, n> order{0, 1, 2, 3};
    do {
      std::vector<float> params = initial;
      ManualClock clock;
      SsgdServer server(
          Schedule{.node_count = n, .iterations_per_epoch = 2, .epochs = 1},
          ServerContext{.parameters = params, .optimizer = sgd_spec(sgd), .clock = &clock},
          SsgdOptions{.wait_for = wait_for});
      Outbox out;
      server.on_start(out);
      out.clear();
      std::vector<bool> in_round(n, false);
      for (int k = 0; k < wait_for; ++k) {
        const int w = order[static_cast<std::size_t>(k)];
        Gradient g{.iteration = 0, .samples = 1};
        plain->encode_into(gradients[static_cast<std::size_t>(w)], g.values);
        server.on_message(w, g, out);
        in_round[static_cast<std::size_t>(w)] = true;
      }
      ASSERT_EQ(server.iteration(), 1);
      std::vector<std::span<const float>> parts;
      for (int w = 0; w < n; ++w) {
        if (in_round[static_cast<std::size_t>(w)]) parts.emplace_back(gradients[w]);
      }
      std::vector<float> mean(size), expected = initial;
      make_optimizer(sgd_spec(sgd), size)->step(expected, mean_of(parts, mean), 0);
      EXPECT_EQ(std::memcmp(params.data(), expected.data(), size * sizeof(float)), 0)
          << "wait_for " << wait_for << ", arrival order " << order[0] << order[1] << order[2]
          << order[3];
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

TEST(Schedule, IterationsPerEpochRoundUp) {
  EXPECT_EQ(make_schedule(60000, 4, 128, 2).iterations_per_epoch, 118);
  EXPECT_EQ(make_schedule(512, 4, 128, 1).iterations_per_epoch, 1);
  EXPECT_EQ(make_schedule(513, 4, 128, 3).total_iterations(), 6);
}

TEST(Factory, UnknownStrategyIsAConfigError) {
  StrategyJob spec;
  spec.psgd = "nope";
  EXPECT_THROW(make_server_role(spec, {}, {}), ConfigError);
}

}  // namespace
}  // namespace psgd
