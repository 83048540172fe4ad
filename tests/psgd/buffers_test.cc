// A model's buffers (BatchNorm's running statistics, Learner::buffers()): the server keeps each
// worker's latest and holds their mean, whatever the order they arrive in; gradient workers carry
// them to the ssgd server, and an ssgd checkpoint restores them.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/error.h"
#include "core/sgd.h"
#include "psgd/common.h"
#include "psgd/gradient_worker.h"
#include "psgd/ssgd.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;
using testing::ToyLearner;

TEST(WorkerBuffers, HoldsTheMeanOfEachWorkersLatest) {
  std::vector<float> target(2, -1.0f);
  WorkerBuffers b(3, target);
  b.update();  // nobody has reported: unchanged
  EXPECT_EQ(target, (std::vector<float>{-1, -1}));
  const std::vector<float> w0{1, 2}, w2{3, 6}, w0_later{5, 10};
  b.receive(2, w2);
  b.receive(0, w0);
  b.update();
  EXPECT_EQ(target, (std::vector<float>{2, 4}));  // the mean of the two that reported
  b.receive(0, w0_later);                         // replaces worker 0's, not added to it
  b.update();
  EXPECT_EQ(target, (std::vector<float>{4, 8}));
  b.receive(1, {});  // a message without buffers changes nothing
  b.update();
  EXPECT_EQ(target, (std::vector<float>{4, 8}));
  const std::vector<float> wrong{1, 2, 3};
  EXPECT_THROW(b.receive(1, wrong), ProtocolError);

  // The same reports in another order give the same mean, bit for bit.
  std::vector<float> other(2, 0.0f);
  WorkerBuffers c(3, other);
  c.receive(0, w0_later);
  c.receive(2, w2);
  c.update();
  EXPECT_EQ(other, target);

  // A checkpoint's copy restores the mean; one of another shape is refused.
  std::vector<float> restored(2, 0.0f);
  WorkerBuffers d(3, restored);
  d.restore(b.snapshot());
  EXPECT_EQ(restored, target);
  WorkerBuffers two(2, restored);
  EXPECT_THROW(two.restore(b.snapshot()), ConfigError);
}

// Two workers with buffers and an ssgd server: after every round the server's buffers are the
// mean of the workers' (which their training steps moved); a server restored from a snapshot has
// them too.
TEST(WorkerBuffers, SsgdServerAveragesTheWorkersAndCheckpointsThem) {
  constexpr std::size_t kSize = 3;
  const int n = 2;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 3, .epochs = 1};
  ManualClock clock;
  std::vector<float> params(kSize, 0.0f), buffers(2, 0.0f);
  const SgdOptions sgd{.learning_rate = 0.1f};
  SsgdServer server(
      schedule,
      ServerContext{
          .parameters = params, .buffers = buffers, .optimizer = sgd_spec(sgd), .clock = &clock});
  std::vector<std::unique_ptr<ToyLearner>> learners;
  std::vector<std::unique_ptr<GradientWorker>> roles;
  for (int w = 0; w < n; ++w) {
    learners.push_back(
        std::make_unique<ToyLearner>(std::vector<float>(kSize, static_cast<float>(w + 1)), kSize));
    learners.back()->buffer_values.assign(2, 0.0f);
    roles.push_back(std::make_unique<GradientWorker>(
        WorkerContext{.learner = learners.back().get(), .clock = &clock}));
  }
  Outbox out;
  server.on_start(out);
  for (int step = 1; step <= 2; ++step) {
    Outbox next;
    for (const auto& env : out) {
      Outbox up;
      roles[env.to]->on_message(*env.message, up);
      roles[env.to]->compute_step(up);
      for (const auto& g : up)
        server.on_message(env.to, *g.message, next);
    }
    out = std::move(next);
    // Worker w's buffer i after `step` steps is (w + 1) + step + i; the mean over w = 0, 1.
    EXPECT_EQ(buffers, (std::vector<float>{1.5f + step, 2.5f + step})) << "step " << step;
  }
  std::vector<float> params_b(params), buffers_b(2, 0.0f);
  SsgdServer resumed(schedule, ServerContext{.parameters = params_b,
                                             .buffers = buffers_b,
                                             .optimizer = sgd_spec(sgd),
                                             .clock = &clock});
  resumed.restore(server.snapshot());
  EXPECT_EQ(buffers_b, buffers);
}

}  // namespace
}  // namespace psgd
