// Gradient coding (fractional repetition) and naive duplication, driven message by message.
#include "psgd/coded/gc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "psgd/factory.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;

// A learner holding blocks: compute_gradient() answers with its blocks in turn, block b's
// gradient at its s-th batch being (p − t_b) · (1 + 0.1 · (s mod 3)), where s counts block b's
// batches only — the per-block batch stream every replica of b agrees on.
class BlockToyLearner final : public Learner {
 public:
  BlockToyLearner(std::vector<int> blocks, std::size_t size)
      : blocks_(std::move(blocks)), steps_(blocks_.size(), 0), params_(size), grads_(size) {}

  static float target(int block, std::size_t i) {
    return 0.3f * static_cast<float>(block + 1) * static_cast<float>(i + 1) - 1.0f;
  }
  static std::vector<float> block_gradient(int block, const std::vector<float>& p, int step) {
    std::vector<float> g(p.size());
    for (std::size_t i = 0; i < p.size(); ++i)
      g[i] = (p[i] - target(block, i)) * (1.0f + 0.1f * static_cast<float>(step % 3));
    return g;
  }

  std::span<float> parameters() override { return params_; }
  std::span<const float> gradients() const override { return grads_; }
  StepStats compute_gradient() override {
    const int b = blocks_[next_];
    const int step = ++steps_[next_];
    next_ = (next_ + 1) % blocks_.size();
    const std::vector<float> p(params_.begin(), params_.end());
    grads_ = block_gradient(b, p, step);
    return {.loss = 1.0, .samples = 4};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return {}; }

 private:
  std::vector<int> blocks_;
  std::vector<int> steps_;
  std::size_t next_ = 0;
  std::vector<float> params_, grads_;
};

StrategyJob gc_job(int n, int r, const std::string& codec) {
  StrategyJob s;
  s.node_count = n;
  s.redundancy = r;
  s.codec = codec;
  s.learn_rate = 0.1;
  s.momentum = 0;
  return s;
}

struct GcHarness {
  static constexpr std::size_t kSize = 4;

  static std::vector<float> initial_params() {
    std::vector<float> p(kSize);
    for (std::size_t i = 0; i < kSize; ++i)
      p[i] = 0.25f * static_cast<float>(i) - 0.3f;
    return p;
  }

  GcHarness(int n, int r, const std::string& codec)
      : initial(initial_params()), params(initial_params()) {
    const StrategyJob spec = gc_job(n, r, codec);
    spec.validate();
    const Schedule schedule{.node_count = n, .iterations_per_epoch = 5, .epochs = 1};
    server = make_server_role(spec, schedule,
                              ServerContext{.parameters = params,
                                            .optimizer = optimizer_spec(spec, schedule),
                                            .uplink = uplink_codec_spec(spec, 0),
                                            .clock = &clock});
    for (int w = 0; w < n; ++w) {
      std::vector<int> blocks;  // the fractional-repetition layout
      for (int k = 0; k < r; ++k)
        blocks.push_back(gc_group(w, r) * r + k);
      learners.push_back(std::make_unique<BlockToyLearner>(blocks, kSize));
      workers.push_back(make_worker_role(
          spec, schedule,
          WorkerContext{.learner = learners.back().get(),
                        .uplink = uplink_codec_spec(spec, static_cast<std::uint64_t>(w)),
                        .clock = &clock}));
    }
  }

  // Starts the run and lets every worker compute its first gradient; returns them by worker.
  std::vector<std::shared_ptr<const Message>> first_gradients() {
    Outbox out;
    server->on_start(out);
    std::vector<std::shared_ptr<const Message>> up(workers.size());
    for (const auto& env : out) {
      Outbox o;
      EXPECT_TRUE(workers[env.to]->on_message(*env.message, o).compute);
      workers[env.to]->compute_step(o);
      EXPECT_EQ(o.size(), 1u);
      up[env.to] = o.at(0).message;
    }
    return up;
  }

  ManualClock clock;
  std::vector<float> initial, params;
  std::unique_ptr<ServerRole> server;
  std::vector<std::unique_ptr<BlockToyLearner>> learners;
  std::vector<std::unique_ptr<WorkerRole>> workers;
};

// Calls f(subset) for every k-subset of 0..n-1.
template <class F>
void for_each_subset(int n, int k, F f) {
  std::vector<int> s(static_cast<std::size_t>(k));
  std::iota(s.begin(), s.end(), 0);
  while (true) {
    f(s);
    int i = k - 1;
    while (i >= 0 && s[i] == n - k + i)
      --i;
    if (i < 0) return;
    ++s[i];
    for (int j = i + 1; j < k; ++j)
      s[j] = s[j - 1] + 1;
  }
}

struct Layout {
  int n, r;
};
void PrintTo(const Layout& l, std::ostream* os) {
  *os << "n" << l.n << "_r" << l.r;
}

class GcDecode : public ::testing::TestWithParam<std::tuple<Layout, const char*>> {};

// The defining property (Tandon et al. 2017, Theorem 1 for fractional repetition): from every
// subset of n − r + 1 workers, in any order, the server applies exactly the mean of all n block
// gradients, and closes the round at the message that covers the last group.
TEST_P(GcDecode, ExactSumOfAllBlocksFromEverySubsetOfNMinusRPlusOneWorkers) {
  const auto [layout, codec] = GetParam();
  const int n = layout.n, r = layout.r;
  std::vector<float> expected(GcHarness::kSize, 0.0f);
  for (int b = 0; b < n; ++b) {
    const auto g = BlockToyLearner::block_gradient(b, GcHarness::initial_params(), 1);
    for (std::size_t i = 0; i < g.size(); ++i)
      expected[i] += g[i];
  }
  int subsets = 0;
  for_each_subset(n, n - r + 1, [&](const std::vector<int>& subset) {
    ++subsets;
    GcHarness h(n, r, codec);
    const auto up = h.first_gradients();
    std::vector<bool> covered(static_cast<std::size_t>(n / r), false);
    int uncovered = n / r;
    // Deliver in a subset-dependent rotation, so orders vary across subsets.
    for (std::size_t j = 0; j < subset.size(); ++j) {
      const int w = subset[(j + static_cast<std::size_t>(subsets)) % subset.size()];
      const auto group = static_cast<std::size_t>(gc_group(w, r));
      if (!covered[group]) --uncovered;
      covered[group] = true;
      Outbox out;
      h.server->on_message(w, *up[static_cast<std::size_t>(w)], out);
      EXPECT_EQ(h.server->iteration(), uncovered == 0 ? 1 : 0);
    }
    ASSERT_EQ(uncovered, 0);
    for (std::size_t i = 0; i < GcHarness::kSize; ++i) {
      const float want = h.initial[i] - 0.1f * expected[i] / static_cast<float>(n);
      EXPECT_NEAR(h.params[i], want, 1e-5f) << "n " << n << " r " << r << " element " << i;
    }
  });
  EXPECT_GT(subsets, 0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, GcDecode,
                         ::testing::Combine(::testing::Values(Layout{2, 2}, Layout{4, 2},
                                                              Layout{6, 2}, Layout{6, 3},
                                                              Layout{6, 6}, Layout{8, 4}),
                                            ::testing::Values("gc", "ndc")),
                         [](const auto& info) {
                           const Layout l = std::get<0>(info.param);
                           return "n" + std::to_string(l.n) + "_r" + std::to_string(l.r) + "_" +
                                  std::get<1>(info.param);
                         });

TEST(Gc, NdcSendsRTimesTheBytesOfGc) {
  GcHarness gc(4, 2, "gc"), ndc(4, 2, "ndc");
  const auto a = gc.first_gradients(), b = ndc.first_gradients();
  const auto bytes = [](const std::shared_ptr<const Message>& m) {
    return std::get<Gradient>(*m).values.bytes.size();
  };
  EXPECT_EQ(bytes(b[0]), 2 * bytes(a[0]));
}

// A straggler never holds a round up: with worker 0 silent for the whole run, the others finish
// it, and each update is still the mean of all n block gradients at the current parameters.
TEST(Gc, RoundsNeverWaitForAStragglerInAGroup) {
  const int n = 4, r = 2;
  GcHarness h(n, r, "gc");
  Outbox out;
  h.server->on_start(out);
  std::vector<float> p = h.initial;
  for (int it = 0; it < 5; ++it) {
    Outbox up;
    for (const auto& env : out) {
      if (env.to == 0) continue;  // the straggler never answers
      EXPECT_TRUE(h.workers[env.to]->on_message(*env.message, up).compute);
      h.workers[env.to]->compute_step(up);
    }
    out.clear();
    for (std::size_t j = 0; j < up.size(); ++j)
      h.server->on_message(static_cast<NodeId>(j + 1), *up[j].message, out);
    ASSERT_EQ(h.server->iteration(), it + 1);
    std::vector<float> sum(p.size(), 0.0f);
    for (int b = 0; b < n; ++b) {
      const auto g = BlockToyLearner::block_gradient(b, p, it + 1);
      for (std::size_t i = 0; i < p.size(); ++i)
        sum[i] += g[i];
    }
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] -= 0.1f * sum[i] / n;
      EXPECT_NEAR(h.params[i], p[i], 1e-4f) << it << " " << i;
    }
  }
  EXPECT_TRUE(h.server->finished());
}

TEST(Gc, ImpossibleCombinationsAreRefusedNamingTheClash) {
  auto refused = [](StrategyJob s, const std::string& words) {
    try {
      s.validate();
    } catch (const ConfigError& e) {
      std::string what = e.what();
      std::size_t start = 0;
      while (start < words.size()) {
        const std::size_t end = std::min(words.find(' ', start), words.size());
        const std::string w = words.substr(start, end - start);
        if (what.find(w) == std::string::npos) {
          ADD_FAILURE() << "'" << what << "' does not name " << w;
        }
        start = end + 1;
      }
      return;
    }
    ADD_FAILURE() << "accepted: " << words;
  };
  refused(gc_job(4, 1, "gc"), "--codec --redundancy");
  refused(gc_job(4, 5, "gc"), "--redundancy --node_count");
  refused(gc_job(6, 4, "gc"), "--redundancy --node_count");
  refused(gc_job(6, 4, "ndc"), "--redundancy --node_count");
  StrategyJob s = gc_job(4, 2, "gc");
  s.psgd = "asgd";
  refused(s, "--codec --psgd");
  s = gc_job(4, 2, "ndc");
  s.psgd = "local_sgd";
  refused(s, "--codec --psgd");
  s = gc_job(4, 2, "gc");
  s.wait_for = 3;
  refused(s, "--codec --wait_for");
  EXPECT_NO_THROW(gc_job(4, 2, "gc").validate());
  EXPECT_NO_THROW(gc_job(4, 1, "ndc").validate());
}

}  // namespace
}  // namespace psgd
