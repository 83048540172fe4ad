// allreduce --overlap on the simulator's model of a communication thread (SimCluster::compute,
// WorkerRole::compute_detached): while a worker computes the rest of backward, the rings of the
// buckets it made final move on, so an iteration costs about max(compute, communication) plus
// the last bucket's ring, not their sum. Virtual time with modelled compute is exact, so the test
// asserts on it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "experiments/sim_cluster.h"
#include "psgd/allreduce_overlap.h"
#include "psgd/factory.h"
#include "psgd/strategy_table.h"

namespace psgd {
namespace {

// Equal layers; the gradient is params - target, written layer by layer as backward reaches it.
class Layers final : public Learner {
 public:
  Layers(int worker, std::size_t layers, std::size_t size)
      : size_(size), params_(layers * size, 0.0f), grads_(layers * size, 0.0f) {
    for (std::size_t i = 0; i < params_.size(); ++i)
      target_.push_back(static_cast<float>((i * 7 + static_cast<std::size_t>(worker)) % 13) / 13);
  }
  std::span<float> parameters() override { return params_; }
  std::span<const float> gradients() const override { return grads_; }
  StepStats compute_gradient() override {
    fill(0, grads_.size());
    return {.loss = 1, .samples = 8};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return {}; }
  std::vector<std::size_t> backward_cuts() const override {
    std::vector<std::size_t> cuts;
    for (std::size_t at = grads_.size() - size_; at > 0; at -= size_)
      cuts.push_back(at);
    return cuts;
  }
  StepStats begin_gradient(std::span<const std::size_t> cuts) override {
    cuts_.assign(cuts.begin(), cuts.end());
    next_ = 0;
    ready_ = grads_.size();
    return {.loss = 1, .samples = 8};
  }
  std::size_t continue_backward() override {
    const std::size_t to = next_ < cuts_.size() ? cuts_[next_++] : 0;
    fill(to, ready_);
    ready_ = to;
    return to;
  }

 private:
  void fill(std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      grads_[i] = params_[i] - target_[i];
  }
  std::size_t size_;
  std::vector<float> params_, grads_, target_;
  std::vector<std::size_t> cuts_;
  std::size_t next_ = 0, ready_ = 0;
};

// Watches a worker role from outside: when each ring chunk reached it (its clock at the
// handler's start is the arrival time) and when each compute_step() ran (the end of the
// computation before it). `detach` false strips WorkerAction::detached: the simulator then runs
// every piece as a plain compute step, the worker busy for messages until it ends (the driver
// without a communication thread).
class Watch final : public WorkerRole {
 public:
  Watch(std::unique_ptr<WorkerRole> inner, const Clock& clock, bool detach)
      : inner_(std::move(inner)), clock_(clock), detach_(detach) {}
  WorkerAction on_message(const Message& message, Outbox& out) override {
    if (const auto* c = std::get_if<RingChunk>(&message)) {
      double& last = last_chunk[c->round];
      last = std::max(last, clock_.now());
      if (computing_) ++during_computation;
    }
    return strip(inner_->on_message(message, out));
  }
  void compute_detached() override {
    computing_ = true;
    inner_->compute_detached();
  }
  WorkerAction compute_step(Outbox& out) override {
    computing_ = false;
    steps.push_back(clock_.now());
    return strip(inner_->compute_step(out));
  }
  std::int64_t iterations_done() const override { return inner_->iterations_done(); }
  std::size_t buckets() const {
    return dynamic_cast<const BucketedAllreduceWorker&>(*inner_).bucket_count();
  }

  std::map<std::int64_t, double> last_chunk;  // per ring round (iteration * buckets + bucket)
  std::vector<double> steps;                  // each compute_step()'s start
  int during_computation = 0;                 // chunks handled while a computation ran

 private:
  WorkerAction strip(WorkerAction a) const {
    if (!detach_) a.detached = false;
    return a;
  }
  std::unique_ptr<WorkerRole> inner_;
  const Clock& clock_;
  bool detach_;
  bool computing_ = false;
};

constexpr int kWorkers = 4;
constexpr std::size_t kLayers = 4;
constexpr std::size_t kLayer = 250'000;  // 1 MB of fp32 per layer and bucket
constexpr std::int64_t kIterations = 6;

struct SimRun {
  double per_iteration = 0;
  std::vector<std::unique_ptr<Watch>> watches;
};

SimRun simulate(double compute_s, bool detach) {
  StrategyJob spec;
  spec.psgd = "allreduce";
  spec.node_count = kWorkers;
  spec.learn_rate = 0.1;
  spec.overlap = true;
  spec.bucket_mb = 0.5;  // a bucket per layer
  const Schedule schedule{.node_count = kWorkers, .iterations_per_epoch = kIterations, .epochs = 1};
  // 1 Gbit/s, 0.1 ms per hop: a bucket's ring moves 2 (n - 1) / n of its 1 MB over each link, 12
  // ms.
  SimCluster cluster(
      {.node_count = kWorkers,
       .network = {.bandwidth_bps = 1e9, .latency_s = 1e-4, .mtu = 0, .unfairness = 0},
       .compute = {.measured = false, .fixed_s = compute_s}});
  std::vector<float> global(kLayers * kLayer, 0.0f);
  auto server = make_server_role(spec, schedule,
                                 ServerContext{.parameters = global,
                                               .optimizer = optimizer_spec(spec, schedule),
                                               .clock = &cluster.server_clock()});
  std::vector<std::unique_ptr<Layers>> learners;
  SimRun r;
  std::vector<WorkerRole*> roles;
  for (int w = 0; w < kWorkers; ++w) {
    learners.push_back(std::make_unique<Layers>(w, kLayers, kLayer));
    auto role =
        make_worker_role(spec, schedule,
                         WorkerContext{.learner = cluster.timed_learner(w, learners.back().get()),
                                       .clock = &cluster.worker_clock(w),
                                       .id = w});
    r.watches.push_back(std::make_unique<Watch>(std::move(role), cluster.worker_clock(w), detach));
    roles.push_back(r.watches.back().get());
  }
  const SimResult result = cluster.run(*server, roles);
  EXPECT_TRUE(result.ok) << result.status;
  // Steady state, without the start (the parameters' broadcast) and the end: from the first
  // piece of iteration 1 to that of the last iteration, on worker 0.
  const std::vector<double>& steps = r.watches[0]->steps;
  EXPECT_EQ(steps.size(), kIterations * kLayers);
  if (steps.size() == kIterations * kLayers) {
    r.per_iteration = (steps[(kIterations - 1) * kLayers] - steps[kLayers]) / (kIterations - 2);
  }
  return r;
}

TEST(SimOverlap, RingsOfEarlyBucketsRunWhileBackwardComputes) {
  const double compute = 0.096;  // 32 ms forward, 16 ms per layer of backward
  // Communication alone (no compute time): the four buckets' rings one after the other.
  const double comm = simulate(0, true).per_iteration;
  const SimRun with = simulate(compute, true);
  const SimRun without = simulate(compute, false);
  ASSERT_GT(comm, 0.040);
  // The defining property: the first bucket's ring (round 4k) completes on every worker before
  // that worker's backward pass of iteration k ends (its fourth compute step, the last layer's),
  // i.e. ring hops were handled while it computed.
  for (const auto& w : with.watches) {
    ASSERT_EQ(w->buckets(), kLayers);
    ASSERT_EQ(w->steps.size(), kIterations * kLayers);
    for (std::int64_t k = 0; k < kIterations; ++k) {
      const double backward_end = w->steps[static_cast<std::size_t>(k) * kLayers + kLayers - 1];
      EXPECT_LT(w->last_chunk.at(k * static_cast<std::int64_t>(kLayers)), backward_end)
          << "iteration " << k;
    }
    EXPECT_GT(w->during_computation, 0);
  }
  // So an iteration costs about max(compute, communication) plus the last bucket's ring (which
  // starts only when backward ends, as in DDP), much closer to the max than to the sum. Here
  // compute 96 ms, communication 48 ms: with about 111 ms, without (each hop waiting for the
  // piece of backward in hand) about 138 ms, the sum 144 ms.
  const double most = std::max(compute, comm);
  const double sum = compute + comm;
  EXPECT_GE(with.per_iteration, compute);
  EXPECT_LT(with.per_iteration, (most + sum) / 2)
      << "with " << with.per_iteration << " s, compute " << compute << " s, comm " << comm << " s";
  EXPECT_GT(without.per_iteration, with.per_iteration + comm / 8)
      << "without " << without.per_iteration << " s, with " << with.per_iteration << " s";
}

}  // namespace
}  // namespace psgd
