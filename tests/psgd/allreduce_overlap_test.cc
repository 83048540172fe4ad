// allreduce --overlap (psgd/allreduce_overlap.h): buckets summed as backward makes them final,
// bit-identical to allreduce without it, over the in-memory transport in random event orders.
#include "psgd/allreduce_overlap.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <random>

#include "core/error.h"
#include "network/in_memory_transport.h"
#include "psgd/factory.h"
#include "psgd/strategy_table.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

// A learner of a few "layers" whose staged backward writes each layer's gradient only when
// continue_backward() reaches it: before that the values are NaN, so a bucket summed before it
// is final poisons every worker's parameters. Gradients are non-integer, so sums in another
// order would differ in their last bits.
class LayeredLearner final : public Learner {
 public:
  LayeredLearner(int worker, std::vector<std::size_t> layers) : layers_(std::move(layers)) {
    std::size_t total = 0;
    for (std::size_t n : layers_)
      total += n;
    std::mt19937 rng(static_cast<unsigned>(17 + worker));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    target_.resize(total);
    for (float& t : target_)
      t = u(rng) * static_cast<float>(worker + 1) / 3.0f;
    params_.assign(total, 0.0f);
    grads_.assign(total, 0.0f);
  }
  std::span<float> parameters() override { return params_; }
  std::span<const float> gradients() const override { return grads_; }
  StepStats compute_gradient() override {
    ++steps_;
    fill(0, grads_.size());
    return {.loss = 1.0 / steps_, .samples = 4};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return {}; }
  std::vector<std::size_t> backward_cuts() const override {
    std::vector<std::size_t> cuts;
    std::size_t offset = 0;
    for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
      offset += layers_[i];
      cuts.insert(cuts.begin(), offset);
    }
    return cuts;
  }
  StepStats begin_gradient(std::span<const std::size_t> cuts) override {
    ++steps_;
    ++staged_steps;
    cuts_.assign(cuts.begin(), cuts.end());
    next_ = 0;
    ready_ = grads_.size();
    std::fill(grads_.begin(), grads_.end(), std::numeric_limits<float>::quiet_NaN());
    return {.loss = 1.0 / steps_, .samples = 4};
  }
  std::size_t continue_backward() override {
    const std::size_t to = next_ < cuts_.size() ? cuts_[next_++] : 0;
    fill(to, ready_);
    ready_ = to;
    return to;
  }
  int staged_steps = 0;

 private:
  void fill(std::size_t begin, std::size_t end) {
    const float scale = 1.0f + 0.37f * static_cast<float>(steps_ % 5);
    for (std::size_t i = begin; i < end; ++i)
      grads_[i] = (params_[i] - target_[i]) * scale + 1e-3f * static_cast<float>(i % 7);
  }
  std::vector<std::size_t> layers_;
  std::vector<float> target_, params_, grads_;
  std::vector<std::size_t> cuts_;
  std::size_t next_ = 0, ready_ = 0;
  int steps_ = 0;
};

struct JobRun {
  std::vector<std::vector<float>> params;  // per worker, at the end
  std::vector<int> staged_steps;
  std::size_t buckets = 0;
  int detached = 0;                  // detached computations the driver ran
  int delivered_while_detached = 0;  // messages a worker handled while its computation ran
};

// How the test driver runs a step the role offers to detach (WorkerAction::detached).
enum class Detach {
  kNever,   // compute_step() alone, as a driver without a compute thread
  kEvents,  // compute_detached() and compute_step() as two events, messages in between
  kThread,  // compute_detached() on a thread of its own while this thread delivers messages
};

// A whole allreduce job over the in-memory transport, every event (a delivery on one link, one
// compute step, or one half of a detached one) picked at random.
JobRun run_job(const StrategyJob& spec, const std::vector<std::size_t>& layers, unsigned seed,
               Detach detach = Detach::kNever) {
  const Schedule schedule{.node_count = spec.node_count, .iterations_per_epoch = 4, .epochs = 2};
  InMemoryNetwork net(spec.node_count);
  testing::ManualClock clock;
  std::size_t total = 0;
  for (std::size_t n : layers)
    total += n;
  std::vector<float> global(total, 0.0f);
  auto server = make_server_role(
      spec, schedule,
      ServerContext{
          .parameters = global, .optimizer = optimizer_spec(spec, schedule), .clock = &clock});
  std::vector<std::unique_ptr<LayeredLearner>> learners;
  std::vector<std::unique_ptr<WorkerRole>> workers;
  for (int w = 0; w < spec.node_count; ++w) {
    learners.push_back(std::make_unique<LayeredLearner>(w, layers));
    workers.push_back(make_worker_role(
        spec, schedule, WorkerContext{.learner = learners.back().get(), .clock = &clock, .id = w}));
  }
  std::vector<bool> computing(workers.size(), false);      // asked for a compute step
  std::vector<bool> detachable(workers.size(), false);     // ... and offered to detach it
  std::vector<bool> detached(workers.size(), false);       // kEvents: compute_detached() has run
  std::vector<std::future<void>> running(workers.size());  // kThread: computing now
  JobRun run;
  auto asked = [&](std::size_t w, const WorkerAction& a) {
    if (!a.compute) return;
    if (detach != Detach::kNever) {
      EXPECT_FALSE(computing[w]) << "worker " << w << " asked twice";
    }
    computing[w] = true;
    detachable[w] = a.detached && detach != Detach::kNever;
    if (detachable[w] && detach == Detach::kThread) {
      ++run.detached;
      running[w] = std::async(std::launch::async, [&, w] { workers[w]->compute_detached(); });
    }
  };
  {
    Outbox out;
    server->on_start(out);
    net.transport(kServer).send(out);
  }
  std::mt19937 rng(seed);
  for (int i = 0; i < 200000 && !server->finished(); ++i) {
    // Candidates: a link with a message (from, to), or a worker's compute step (to = -2).
    std::vector<std::pair<NodeId, NodeId>> ev;
    for (NodeId to = kServer; to < spec.node_count; ++to)
      for (NodeId from = kServer; from < spec.node_count; ++from)
        if (from != to && net.pending(from, to) > 0) ev.emplace_back(from, to);
    for (int w = 0; w < spec.node_count; ++w)
      if (computing[static_cast<std::size_t>(w)]) ev.emplace_back(w, -2);
    if (ev.empty()) break;
    const auto [from, to] = ev[rng() % ev.size()];
    Outbox out;
    if (to == -2) {
      const auto w = static_cast<std::size_t>(from);
      if (detachable[w] && detach == Detach::kEvents && !detached[w]) {
        ++run.detached;
        workers[w]->compute_detached();  // sends nothing
        detached[w] = true;
        continue;
      }
      if (running[w].valid()) running[w].get();
      computing[w] = detached[w] = false;
      asked(w, workers[w]->compute_step(out));
      net.transport(from).send(out);
    } else if (to == kServer) {
      server->on_message(from, *net.take(from, to), out);
      net.transport(kServer).send(out);
    } else {
      const auto w = static_cast<std::size_t>(to);
      if (detached[w] || running[w].valid()) ++run.delivered_while_detached;
      asked(w, workers[w]->on_message(*net.take(from, to), out));
      net.transport(to).send(out);
    }
  }
  for (auto& r : running)
    if (r.valid()) r.get();
  EXPECT_TRUE(server->finished());
  for (std::size_t w = 0; w < workers.size(); ++w) {
    const auto p = learners[w]->parameters();
    run.params.emplace_back(p.begin(), p.end());
    run.staged_steps.push_back(learners[w]->staged_steps);
    if (const auto* b = dynamic_cast<const BucketedAllreduceWorker*>(workers[w].get()))
      run.buckets = b->bucket_count();
  }
  return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

StrategyJob allreduce_job(int n, const std::string& codec, bool overlap, double bucket_mb) {
  StrategyJob s;
  s.psgd = "allreduce";
  s.node_count = n;
  s.codec = codec;
  s.learn_rate = 0.1;
  s.momentum = 0.9;
  s.overlap = overlap;
  s.bucket_mb = bucket_mb;
  return s;
}

// The defining property: with --overlap every worker ends with the parameters of allreduce
// without it, bit for bit, whatever the buckets, the ring size, the codec and the event order.
TEST(AllreduceOverlap, BitIdenticalToAllreduceWithoutOverlap) {
  // Layers of 1000, 3, 2500, 77 and 1201 values: uneven against every ring size.
  const std::vector<std::size_t> layers{1000, 3, 2500, 77, 1201};
  for (const char* codec : {"plain", "fp16"}) {
    for (int n : {1, 2, 3, 4}) {
      const JobRun without = run_job(allreduce_job(n, codec, false, 0), layers, 1);
      ASSERT_EQ(without.params.size(), static_cast<std::size_t>(n));
      for (const auto& p : without.params) {
        ASSERT_TRUE(same_bits(p, without.params[0])) << codec << " n " << n;
        ASSERT_TRUE(std::isfinite(p[0]));
      }
      // 0.000004 MB: a bucket per layer. 0.006: the last layer alone (it holds a quarter of the
      // gradient, BucketOptions::first_bucket_share), [1003, 3580) and [0, 1003). 25: the last
      // layer and the rest.
      for (double mb : {0.000004, 0.006, 25.0}) {
        for (unsigned seed : {1u, 2u, 3u}) {
          SCOPED_TRACE(::testing::Message()
                       << codec << " n " << n << " bucket_mb " << mb << " seed " << seed);
          const JobRun with = run_job(allreduce_job(n, codec, true, mb), layers, seed);
          EXPECT_EQ(with.buckets, mb < 1e-3 ? layers.size() : mb < 1 ? 3u : 2u);
          EXPECT_EQ(with.staged_steps[0], 8) << "every step computed in stages";
          for (const auto& p : with.params)
            EXPECT_TRUE(same_bits(p, without.params[0]));
        }
      }
    }
  }
}

TEST(AllreduceOverlap, BucketsFollowBackwardOrderAndNeverSplitALayer) {
  const std::vector<std::size_t> cuts{900, 500, 100};  // layers [900,1000) [500,900) ...
  using B = std::vector<std::pair<std::size_t, std::size_t>>;
  // Caps in bytes: 4 values per 16 bytes.
  EXPECT_EQ(make_buckets(1000, cuts,
                         {.first_bucket_bytes = 4, .bucket_bytes = 4, .first_bucket_share = 1}),
            (B{{900, 1000}, {500, 900}, {100, 500}, {0, 100}}));
  // The first bucket closes at 100 values (400 bytes); the next ones at 2000 bytes: the 1600
  // bytes of [500, 900) are not enough, [100, 900) is; what is left is the last bucket.
  EXPECT_EQ(
      make_buckets(1000, cuts,
                   {.first_bucket_bytes = 400, .bucket_bytes = 2000, .first_bucket_share = 1}),
      (B{{900, 1000}, {100, 900}, {0, 100}}));
  EXPECT_EQ(
      make_buckets(1000, cuts,
                   {.first_bucket_bytes = 401, .bucket_bytes = 1600, .first_bucket_share = 1}),
      (B{{500, 1000}, {100, 500}, {0, 100}}));
  EXPECT_EQ(make_buckets(1000, cuts,
                         {.first_bucket_bytes = 4000, .bucket_bytes = 4, .first_bucket_share = 1}),
            (B{{0, 1000}}));
  // The first bucket also closes at a share of the gradient: a quarter (the default) of 4000
  // bytes is 1000, 250 values: [900, 1000) is not enough, [500, 1000) is. So a gradient below
  // DDP's 1 MiB is not one bucket unless its last layer holds all but a quarter of it.
  EXPECT_EQ(make_buckets(1000, cuts, {.first_bucket_bytes = 4000, .bucket_bytes = 4}),
            (B{{500, 1000}, {100, 500}, {0, 100}}));
  EXPECT_EQ(make_buckets(1000, cuts, {}), (B{{500, 1000}, {0, 500}}));
  EXPECT_EQ(make_buckets(1000, std::vector<std::size_t>{100}, {}), (B{{100, 1000}, {0, 100}}));
  EXPECT_EQ(make_buckets(1000, std::vector<std::size_t>{950}, {}), (B{{0, 1000}}));
  // The CNN's layers (values): conv1 416, conv2 12832, fc1 200832, fc2 1290.
  const std::vector<std::size_t> cnn{213248 + 832, 13248, 416};
  EXPECT_EQ(make_buckets(215370, cnn, {}), (B{{13248, 215370}, {0, 13248}}));
  EXPECT_EQ(make_buckets(1000, {}, {}), (B{{0, 1000}}));
  EXPECT_EQ(make_buckets(0, {}, {}), (B{{0, 0}}));
}

TEST(AllreduceOverlap, TheJobStartSaysWhatItsBucketsAre) {
  const std::vector<std::size_t> cnn{214080, 13248, 416};
  const std::string two = describe_buckets(215370, cnn, {});
  EXPECT_NE(two.find("2 buckets"), std::string::npos) << two;
  EXPECT_NE(two.find("0.808 MB, 0.053 MB"), std::string::npos) << two;
  const std::string one = describe_buckets(1000, std::vector<std::size_t>{950}, {});
  EXPECT_NE(one.find("one bucket"), std::string::npos) << one;
  EXPECT_NE(one.find("nothing overlaps"), std::string::npos) << one;
  const std::string script = describe_buckets(1000, {}, {});
  EXPECT_NE(script.find("cannot pause"), std::string::npos) << script;
}

// The detached seam (WorkerRole::compute_detached): every piece of backward computed apart from
// the message handling, which goes on meanwhile, as two events in random orders or on a thread of
// its own beside this one, gives the same bits as allreduce without --overlap. The learner's
// not-yet-final layers are NaN until computed, so a ring that read one, or a handler that touched
// the gradient being computed, would poison the parameters.
TEST(AllreduceOverlap, DetachedComputationKeepsTheBitsInEveryOrder) {
  const std::vector<std::size_t> layers{1000, 3, 2500, 77, 1201};
  for (const char* codec : {"plain", "fp16"}) {
    for (int n : {2, 3, 4}) {
      const JobRun without = run_job(allreduce_job(n, codec, false, 0), layers, 1);
      for (Detach detach : {Detach::kEvents, Detach::kThread}) {
        int delivered = 0;
        for (unsigned seed : {1u, 2u, 3u, 4u}) {
          SCOPED_TRACE(::testing::Message() << codec << " n " << n << " seed " << seed << " "
                                            << (detach == Detach::kEvents ? "events" : "thread"));
          const JobRun with =
              run_job(allreduce_job(n, codec, true, 0.000004), layers, seed, detach);
          // 8 iterations of 5 pieces (the forward pass rides with the first) per worker.
          EXPECT_EQ(with.detached, n * 8 * 5);
          delivered += with.delivered_while_detached;
          for (const auto& p : with.params)
            EXPECT_TRUE(same_bits(p, without.params[0]));
        }
        EXPECT_GT(delivered, 0) << "no message was handled during a computation";
      }
    }
  }
}

// What --overlap cannot do under allreduce is refused in one line naming what to change.
TEST(AllreduceOverlap, TheJobRefusesWhatItCannotOverlap) {
  auto message = [](const StrategyJob& s) {
    try {
      s.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  StrategyJob s = allreduce_job(4, "plain", true, 0);
  EXPECT_EQ(message(s), "no error");
  s.codec = "fp16";
  EXPECT_EQ(message(s), "no error");
  s.codec = "powersgd";
  EXPECT_NE(message(s).find("--overlap with --codec powersgd"), std::string::npos) << message(s);
  s.codec = "plain";
  s.allreduce_backend = "gloo";
  EXPECT_NE(message(s).find("--overlap with --allreduce_backend gloo"), std::string::npos)
      << message(s);
  s.allreduce_backend = "ring";
  s.allreduce_on_loss = "shrink";
  EXPECT_NE(message(s).find("--overlap with --allreduce_on_loss shrink"), std::string::npos)
      << message(s);
  s = allreduce_job(4, "plain", false, 0.5);
  EXPECT_NE(message(s).find("--bucket_mb without --overlap"), std::string::npos) << message(s);
  s.psgd = "ssgd";
  s.overlap = true;
  EXPECT_NE(message(s).find("bucket_mb"), std::string::npos) << message(s);
}

}  // namespace
}  // namespace psgd
