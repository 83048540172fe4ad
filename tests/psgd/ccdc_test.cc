// ccdc (coded distributed computing over the peer mesh, psgd/coded/ccdc.h), its roles driven
// message by message without sockets. (Over 400 lines: the scheme's combinatorics, its roles and
// its faults share one harness.)
#include "psgd/coded/ccdc.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>

#include "codecs/factory.h"
#include "core/error.h"
#include "network/frame.h"
#include "psgd/allreduce.h"
#include "psgd/factory.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;

// A learner holding blocks: compute_gradient() answers with its blocks in turn (ascending), block
// b's gradient at its s-th batch being (p − t_b) · (1 + 0.1 · (s mod 3)) with irregular targets,
// so that the sum depends on the order of the float additions.
class BlockLearner final : public Learner {
 public:
  BlockLearner(std::vector<int> blocks, std::size_t size)
      : blocks_(std::move(blocks)), steps_(blocks_.size(), 0), params_(size), grads_(size) {}

  static float target(int block, std::size_t i) {
    return 0.37f * static_cast<float>(block + 1) * static_cast<float>(i % 7 + 1) -
           1.3f / static_cast<float>(i + 3);
  }
  static std::vector<float> block_gradient(int block, std::span<const float> p, int step) {
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
    grads_ = block_gradient(b, params_, step);
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

struct Reports final : ServerObserver {
  void on_worker(NodeId w, const WorkerReport& r) override { workers.emplace_back(w, r); }
  void on_round(const RoundStats&) override {}
  std::vector<std::pair<NodeId, WorkerReport>> workers;
};

StrategyJob ccdc_job(int n, int r) {
  StrategyJob s;
  s.psgd = "broadcast";
  s.codec = "ccdc";
  s.node_count = n;
  s.redundancy = r;
  s.learn_rate = 0.1;
  s.momentum = 0.5;
  return s;
}

std::vector<float> initial_params(std::size_t d) {
  std::vector<float> p(d);
  for (std::size_t i = 0; i < d; ++i)
    p[i] = 0.11f * static_cast<float>(i % 13) - 0.4f;
  return p;
}

// n CcdcWorkers and the AllreduceServer, every delivery and computation an event in a seeded
// random order (messages of one sender to one receiver stay in order, as over TCP).
struct Harness {
  Harness(int n, int r, std::size_t d, bool reduce_scatter, int iterations)
      : spec(ccdc_job(n, r)),
        schedule{.node_count = n, .iterations_per_epoch = iterations, .epochs = 1},
        layout(n, r, d, reduce_scatter),
        params(initial_params(d)) {
    spec.validate();
    server = std::make_unique<AllreduceServer>(
        schedule, ServerContext{.parameters = params, .clock = &clock, .observer = &reports});
    for (int w = 0; w < n; ++w) {
      learners.push_back(std::make_unique<BlockLearner>(layout.blocks_of(w), d));
      workers.push_back(std::make_unique<CcdcWorker>(
          WorkerContext{.learner = learners.back().get(),
                        .uplink = uplink_codec_spec(spec, static_cast<std::uint64_t>(w)),
                        .clock = &clock,
                        .id = w},
          schedule, optimizer_spec(spec, schedule),
          CcdcOptions{.redundancy = r, .reduce_scatter = reduce_scatter}));
    }
    links.resize(static_cast<std::size_t>(n * n));
    to_server.resize(static_cast<std::size_t>(n));
    computing.assign(static_cast<std::size_t>(n), false);
  }

  std::deque<std::shared_ptr<const Message>>& link(int from, int to) {
    return links[static_cast<std::size_t>(from * schedule.node_count + to)];
  }

  void route(int from, const Outbox& out) {
    for (const auto& env : out) {
      if (env.to == kServer) {
        to_server[static_cast<std::size_t>(from)].push_back(env.message);
      } else {
        link(from, env.to).push_back(env.message);
      }
    }
  }

  // Runs random events until the server is done; false if nothing can happen any more.
  bool run(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Outbox start;
    server->on_start(start);
    for (const auto& env : start)
      params_in.push_back(env);
    const int n = schedule.node_count;
    for (int steps = 0; steps < 1000000 && !server->finished(); ++steps) {
      // kind 0: server delivery from w; 1: Params to w; 2: peer link (from, to); 3: compute.
      std::vector<std::array<int, 3>> ev;
      for (int w = 0; w < n; ++w) {
        if (!to_server[static_cast<std::size_t>(w)].empty()) ev.push_back({0, w, 0});
        if (computing[static_cast<std::size_t>(w)]) ev.push_back({3, w, 0});
        for (int f = 0; f < n; ++f)
          if (!link(f, w).empty() && !computing[static_cast<std::size_t>(w)])
            ev.push_back({2, f, w});
      }
      if (!params_in.empty()) ev.push_back({1, 0, 0});
      if (ev.empty()) return false;
      const auto e = ev[rng() % ev.size()];
      Outbox out;
      if (e[0] == 0) {
        auto& q = to_server[static_cast<std::size_t>(e[1])];
        auto m = q.front();
        q.pop_front();
        server->on_message(e[1], *m, out);
      } else if (e[0] == 1) {
        const Envelope env = params_in.front();
        params_in.pop_front();
        computing[static_cast<std::size_t>(env.to)] =
            workers[static_cast<std::size_t>(env.to)]->on_message(*env.message, out).compute;
        route(env.to, out);
      } else if (e[0] == 2) {
        auto& q = link(e[1], e[2]);
        auto m = q.front();
        q.pop_front();
        computing[static_cast<std::size_t>(e[2])] =
            workers[static_cast<std::size_t>(e[2])]->on_message(*m, out).compute;
        route(e[2], out);
      } else {
        computing[static_cast<std::size_t>(e[1])] =
            workers[static_cast<std::size_t>(e[1])]->compute_step(out).compute;
        route(e[1], out);
      }
    }
    return server->finished();
  }

  // The reference: every block gradient at the common parameters, summed in block order, scaled
  // by 1 / C(n, r), applied with the same optimiser.
  std::vector<float> expected(int iterations) const {
    std::vector<float> p = initial_params(layout.length());
    auto sgd = make_optimizer(optimizer_spec(spec, schedule), p.size());
    for (int it = 0; it < iterations; ++it) {
      std::vector<float> sum;
      for (int b = 0; b < layout.blocks(); ++b) {
        const auto g = BlockLearner::block_gradient(b, p, it + 1);
        if (b == 0) {
          sum = g;
        } else {
          for (std::size_t i = 0; i < g.size(); ++i)
            sum[i] += g[i];
        }
      }
      const float scale = 1.0f / static_cast<float>(layout.blocks());
      for (float& x : sum)
        x *= scale;
      sgd->step(p, sum, it);
    }
    return p;
  }

  StrategyJob spec;
  Schedule schedule;
  CcdcLayout layout;
  ManualClock clock;
  Reports reports;
  std::vector<float> params;
  std::unique_ptr<AllreduceServer> server;
  std::vector<std::unique_ptr<BlockLearner>> learners;
  std::vector<std::unique_ptr<CcdcWorker>> workers;
  std::deque<Envelope> params_in;
  std::vector<std::deque<std::shared_ptr<const Message>>> links, to_server;
  std::vector<bool> computing;
};

TEST(CcdcLayout, MatchesTheRSubsetPlacement) {
  // Blocks in lexicographic order, as nn::place_blocks: for n = 4, r = 2: 01 02 03 12 13 23.
  const CcdcLayout l(4, 2, 10, true);
  ASSERT_EQ(l.blocks(), 6);
  EXPECT_EQ(l.block(0), (std::vector<int>{0, 1}));
  EXPECT_EQ(l.block(3), (std::vector<int>{1, 2}));
  EXPECT_EQ(l.block(5), (std::vector<int>{2, 3}));
  EXPECT_EQ(l.blocks_of(2), (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(l.groups(), 4);  // C(4, 3)
  EXPECT_EQ(l.groups_of(0).size(), 3u);
  EXPECT_EQ(l.block_without(0, 0), 3);  // {0,1,2} \ {0} = {1,2}
  EXPECT_EQ(binomial_capped(6, 3, 1000), 20u);
  EXPECT_EQ(binomial_capped(60, 30, 1000), 1001u);
}

TEST(Ccdc, RefusesImpossibleConfigurations) {
  auto refuses = [](StrategyJob s, const std::string& needle) {
    try {
      s.validate();
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  StrategyJob s = ccdc_job(4, 2);
  EXPECT_NO_THROW(s.validate());
  s.psgd = "ssgd";
  refuses(s, "--psgd broadcast");
  s = ccdc_job(4, 4);
  refuses(s, "redundancy < node_count");
  s = ccdc_job(1, 1);
  refuses(s, "redundancy < node_count");
  s = ccdc_job(4, 2);
  s.error_feedback = "on";
  refuses(s, "--error_feedback on");
  s = ccdc_job(4, 2);
  s.momentum_at = "worker";
  refuses(s, "--momentum_at worker");
  EXPECT_THROW(make_codec(CodecSpec{.name = "ccdc"}), ConfigError);
  EXPECT_THROW(check_ccdc_layout(40, 20), ConfigError);  // C(40, 21) groups
  refuses(ccdc_job(40, 20), "coded multicast groups");
  EXPECT_NO_THROW(ccdc_job(40, 2).validate());  // C(40, 3) = 9880 groups
  EXPECT_NO_THROW(check_ccdc_layout(40, 2));
  // The schedule counts one batch per block: C(4, 2) = 6 blocks of 10 samples per iteration.
  s = ccdc_job(4, 2);
  s.batch_size = 10;
  EXPECT_EQ(make_schedule(s, 600).iterations_per_epoch, 10);
  EXPECT_EQ(make_schedule(s, 601).iterations_per_epoch, 11);
  EXPECT_EQ(make_schedule(s, 600).node_count, 4);
}

struct Case {
  int n, r;
};

class CcdcExact : public ::testing::TestWithParam<std::tuple<Case, bool>> {};

// The defining property: every worker recovers every block (slice) it lacks exactly, so all apply
// bit for bit the mean of all C(n, r) block gradients summed in block order, in any delivery order.
TEST_P(CcdcExact, EveryWorkerAppliesTheExactBlockSum) {
  const auto [c, reduce_scatter] = GetParam();
  for (std::size_t d : {std::size_t{7}, std::size_t{61}}) {  // uneven and empty pieces too
    for (std::uint64_t seed = 1; seed <= 2; ++seed) {
      Harness h(c.n, c.r, d, reduce_scatter, 3);
      ASSERT_TRUE(h.run(seed * 7 + d)) << "stuck";
      const auto want = h.expected(3);
      EXPECT_EQ(h.params, want) << "server, d " << d;
      for (int w = 0; w < c.n; ++w) {
        const auto p = h.learners[static_cast<std::size_t>(w)]->parameters();
        EXPECT_EQ(std::vector<float>(p.begin(), p.end()), want) << "worker " << w << " d " << d;
        EXPECT_EQ(h.workers[static_cast<std::size_t>(w)]->iterations_done(), 3);
      }
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (int n = 2; n <= 6; ++n)
    for (int r = 1; r < n; ++r)
      v.push_back({n, r});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Layouts, CcdcExact,
                         ::testing::Combine(::testing::ValuesIn(all_cases()), ::testing::Bool()),
                         [](const auto& info) {
                           const Case c = std::get<0>(info.param);
                           return "n" + std::to_string(c.n) + "_r" + std::to_string(c.r) +
                                  (std::get<1>(info.param) ? "_scatter" : "_blocks");
                         });

std::uint64_t frame_bytes(Message m) {
  return EncodedFrame(std::make_shared<const Message>(std::move(m))).size();
}

// Bytes per worker and iteration, from the formulas of psgd/coded/ccdc.h with the real frame sizes.
std::uint64_t broadcast_bytes(int n, std::size_t d) {
  std::vector<float> g(d, 1.0f);
  const Payload p = make_codec(CodecSpec{.error_feedback = "off"})->encode(g);
  return static_cast<std::uint64_t>(n - 1) * frame_bytes(PeerGradient{.values = p});
}
std::uint64_t coded_frame(std::size_t elements) {
  return frame_bytes(CcdcCoded{.bits = std::vector<std::uint32_t>(elements)});
}

TEST(CcdcBytes, UnicastAndMulticastLoadsFollowTheFormulas) {
  const std::size_t d = 2520;  // divisible by n·r for every case: the formulas are exact
  for (const Case c : all_cases()) {
    const int n = c.n, r = c.r;
    const auto others = binomial_capped(n - 1, r, 1u << 30);  // groups of a worker: C(n-1, r)
    for (bool scatter : {true, false}) {
      Harness h(n, r, d, scatter, 1);
      ASSERT_TRUE(h.run(3));
      const std::size_t piece = scatter ? d / static_cast<std::size_t>(n * r) : d / r;
      std::uint64_t unicast = others * r * coded_frame(piece);
      std::uint64_t multicast = others * coded_frame(piece);
      if (scatter) {
        const auto slice = frame_bytes(CcdcSlice{.values = std::vector<float>(d / n)});
        unicast += static_cast<std::uint64_t>(n - 1) * slice;
        multicast += slice;
      }
      ASSERT_EQ(h.reports.workers.size(), static_cast<std::size_t>(n));
      for (const auto& [w, report] : h.reports.workers) {
        EXPECT_EQ(report.payload_bytes, unicast) << "n " << n << " r " << r << " w " << w;
        EXPECT_EQ(report.multicast_bytes, multicast) << "n " << n << " r " << r << " w " << w;
      }
      // Payload elements: the coded shuffle of whole blocks sends exactly as many elements over
      // unicast as sending every block a worker lacks once, uncoded — C(n-1, r)·d; its multicast
      // load is 1/r of that (the coding gain of CDC is a multicast gain).
      if (!scatter) {
        EXPECT_EQ(others * r * piece, others * d);
      }
      // ccdc (reduce-scatter) sends fewer bytes than broadcast plain at every n, r here:
      // (C(n-1,r) + n-1)·d/n < (n-1)·d.
      // (At n = 2 both are d.)
      if (scatter && n >= 3) {
        EXPECT_LT(unicast, broadcast_bytes(n, d)) << "n " << n << " r " << r;
      }
    }
  }
  // n = 4, r = 2 (the README's measurement): 1.5·d against broadcast's 3·d; whole blocks 3·d.
  const double ratio =
      static_cast<double>(3 * 2 * coded_frame(d / 8) +
                          3 * frame_bytes(CcdcSlice{.values = std::vector<float>(d / 4)})) /
      static_cast<double>(broadcast_bytes(4, d));
  EXPECT_NEAR(ratio, 0.5, 0.02);  // frame headers are ~1 % at this d
}

// A harness whose worker 1 has its Params and has computed iteration 0.
struct Started {
  Started() : h(4, 2, 40, true, 2) {
    Outbox start;
    h.server->on_start(start);
    for (const auto& env : start) {
      Outbox out;
      h.workers[static_cast<std::size_t>(env.to)]->on_message(*env.message, out);
    }
    Outbox out;
    h.workers[1]->compute_step(out);
  }
  CcdcWorker& w1() { return *h.workers[1]; }
  CcdcCoded valid_from_0() const {
    // Group {0,1,2} (rank 0) holds both 0 and 1.
    return CcdcCoded{.from = 0,
                     .iteration = 0,
                     .group = 0,
                     .bits = std::vector<std::uint32_t>(h.layout.coded_length(0, 0))};
  }
  Harness h;
};

TEST(CcdcMalformed, CodedMessagesAreRefused) {
  auto refused = [](Started& s, const Message& m, const std::string& needle) {
    Outbox out;
    try {
      s.w1().on_message(m, out);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Started s;
  CcdcCoded m = s.valid_from_0();
  m.bits.push_back(0);
  refused(s, m, "coded elements");  // wrong size
  m = s.valid_from_0();
  m.bits.clear();
  refused(s, m, "coded elements");
  m = s.valid_from_0();
  m.group = s.h.layout.groups();
  refused(s, m, "subset id");
  m.group = -1;
  refused(s, m, "subset id");
  m = s.valid_from_0();
  m.group = 3;  // {1,2,3}: not the sender's
  refused(s, m, "does not hold both");
  m = s.valid_from_0();
  m.from = 3;  // group 0 = {0,1,2} without 3
  refused(s, m, "does not hold both");
  m = s.valid_from_0();
  m.from = 1;  // itself
  refused(s, m, "coded message from worker 1");
  m = s.valid_from_0();
  m.iteration = 2;  // two ahead (and past the last iteration)
  refused(s, m, "for iteration 2");
  m = s.valid_from_0();
  m.from = 7;
  refused(s, m, "from worker 7");
  // A valid one is taken, its duplicate refused.
  Outbox out;
  EXPECT_NO_THROW(s.w1().on_message(s.valid_from_0(), out));
  refused(s, s.valid_from_0(), "twice");
  refused(s, CcdcSlice{.from = 2, .iteration = 0, .values = std::vector<float>(3)},
          "reduced slice of 3 elements");
  refused(s, CcdcSlice{.from = 2, .iteration = 1, .values = std::vector<float>(10)},
          "for iteration 1 during iteration 0");
  refused(s, PeerGradient{.from = 2}, "unexpected PeerGradient");
}

TEST(CcdcMalformed, ACodedMessageThatDoesNotCancelIsRefused) {
  // n = 3, r = 2, d = 7: slices of 2, 2 and 3 elements, so some coded messages are padded; their
  // padding must cancel to zero, or the senders' block gradients differ.
  Harness h(3, 2, 7, true, 1);
  Outbox start;
  h.server->on_start(start);
  for (const auto& env : start) {
    Outbox out;
    h.workers[static_cast<std::size_t>(env.to)]->on_message(*env.message, out);
  }
  std::vector<Outbox> sent(3);
  for (int w = 0; w < 3; ++w)
    h.workers[static_cast<std::size_t>(w)]->compute_step(sent[static_cast<std::size_t>(w)]);
  int padded = 0;
  for (int w = 0; w < 3; ++w) {
    for (const auto& env : sent[static_cast<std::size_t>(w)]) {
      const auto* c = std::get_if<CcdcCoded>(env.message.get());
      if (c == nullptr) continue;
      const int lacked = h.layout.block_without(static_cast<int>(c->group), env.to);
      if (h.layout.piece(lacked, w, env.to).size() == c->bits.size()) continue;
      CcdcCoded m = *c;
      m.bits.back() ^= 1u;
      Outbox out;
      EXPECT_THROW(h.workers[static_cast<std::size_t>(env.to)]->on_message(m, out), ProtocolError);
      ++padded;
    }
  }
  EXPECT_GT(padded, 0);
}

}  // namespace
}  // namespace psgd
