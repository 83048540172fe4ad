// The checkpoint file format (psgd/checkpoint.h) and the ssgd role's snapshot / restore.
#include "psgd/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "core/sgd.h"
#include "network/messages.h"
#include "psgd/factory.h"
#include "psgd/ssgd.h"
#include "tests/psgd/toy_learner.h"

namespace psgd {
namespace {

using testing::ManualClock;
using testing::ToyLearner;

Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.header = {.model = "mlp", .num_parameters = 6, .config_hash = "4f2a9c", .strategy = "ssgd"};
  c.iteration = 42;
  c.epochs_done = 3;
  c.parameters = {0.5f, -1.25f, 3.0f, 0.0f, 1e-20f, -7.5f};
  c.role_state = {1, 2, 3, 4, 5};
  c.worker_batches = {42, 41};
  c.driver_state = R"({"recorder":{"epoch":3}})";
  c.worker_states = {{7, 8, 9}, {}};
  c.average = {1, 0, 2};
  return c;
}

void expect_equal(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.header.model, b.header.model);
  EXPECT_EQ(a.header.num_parameters, b.header.num_parameters);
  EXPECT_EQ(a.header.config_hash, b.header.config_hash);
  EXPECT_EQ(a.header.strategy, b.header.strategy);
  EXPECT_EQ(a.iteration, b.iteration);
  EXPECT_EQ(a.epochs_done, b.epochs_done);
  EXPECT_EQ(a.parameters, b.parameters);
  EXPECT_EQ(a.role_state, b.role_state);
  EXPECT_EQ(a.worker_batches, b.worker_batches);
  EXPECT_EQ(a.driver_state, b.driver_state);
  EXPECT_EQ(a.worker_states, b.worker_states);
  EXPECT_EQ(a.average, b.average);
}

// The message of the CheckpointError that decoding `bytes` throws ("" if none is thrown).
std::string refusal(std::span<const std::uint8_t> bytes) {
  try {
    decode_checkpoint(bytes);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

std::string mismatch(const Checkpoint& c, const CheckpointHeader& expected) {
  try {
    check_matches(c, expected);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointFormat, RoundTripsEveryField) {
  const Checkpoint c = sample_checkpoint();
  const auto bytes = encode_checkpoint(c);
  expect_equal(decode_checkpoint(bytes), c);
  EXPECT_EQ(mismatch(decode_checkpoint(bytes), c.header), "");
}

TEST(CheckpointFormat, RoundTripsThroughAFile) {
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("psgd-ckpt-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / kCheckpointFile).string();
  Checkpoint c = sample_checkpoint();
  write_checkpoint_file(path, encode_checkpoint(c));
  c.iteration = 43;  // a second write replaces the first
  write_checkpoint_file(path, encode_checkpoint(c));
  expect_equal(decode_checkpoint(read_checkpoint_file(path)), c);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
  EXPECT_THROW(read_checkpoint_file(path), CheckpointError);
}

TEST(CheckpointFormat, TruncationAtEveryLengthIsRefused) {
  const auto bytes = encode_checkpoint(sample_checkpoint());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::string why = refusal(std::span(bytes).first(n));
    EXPECT_NE(why.find("truncated"), std::string::npos) << n << " bytes: " << why;
  }
}

TEST(CheckpointFormat, EveryFlippedByteIsRefused) {
  const auto good = encode_checkpoint(sample_checkpoint());
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bytes = good;
    bytes[i] ^= 0x5a;
    EXPECT_NE(refusal(bytes), "") << "byte " << i;
  }
}

TEST(CheckpointFormat, EachCorruptionSaysWhich) {
  const auto good = encode_checkpoint(sample_checkpoint());
  auto bytes = good;
  bytes[0] = 'X';
  EXPECT_NE(refusal(bytes).find("not a psgd checkpoint"), std::string::npos);
  bytes = good;
  bytes[8] = static_cast<std::uint8_t>(kCheckpointFormat + 1);
  EXPECT_NE(refusal(bytes).find(fmt::format("format version {}", kCheckpointFormat + 1)),
            std::string::npos)
      << refusal(bytes);
  bytes = good;
  bytes[12] = static_cast<std::uint8_t>(kProtocolVersion - 1);
  EXPECT_NE(refusal(bytes).find(fmt::format("protocol v{}", kProtocolVersion - 1)),
            std::string::npos)
      << refusal(bytes);
  bytes = good;
  bytes.back() ^= 1;  // a parameter or the driver state
  EXPECT_NE(refusal(bytes).find("SHA-256"), std::string::npos) << refusal(bytes);
  bytes = good;
  bytes.push_back(0);
  EXPECT_NE(refusal(bytes).find("corrupt"), std::string::npos) << refusal(bytes);
}

TEST(CheckpointFormat, AnotherModelOrJobIsRefused) {
  const Checkpoint c = sample_checkpoint();
  CheckpointHeader other = c.header;
  other.model = "cnn";
  EXPECT_NE(mismatch(c, other).find("another model"), std::string::npos);
  other = c.header;
  other.num_parameters = 7;
  EXPECT_NE(mismatch(c, other).find("another model"), std::string::npos);
  other = c.header;
  other.config_hash = "77e0b1";
  EXPECT_NE(mismatch(c, other).find("another job configuration"), std::string::npos);
}

TEST(CheckpointFormat, TheTablesSayWhoCheckpoints) {
  StrategyJob spec;
  for (const StrategyEntry& e : strategy_table()) {
    spec.psgd = std::string(e.name);
    EXPECT_EQ(supports_checkpoints(spec), e.checkpoints) << e.name;
    EXPECT_TRUE(e.checkpoints) << e.name << ": every strategy has checkpoints now";
  }
  for (const CodingEntry& e : coding_table()) {
    spec.psgd = std::string(e.strategy);
    spec.codec = std::string(e.name);
    EXPECT_EQ(supports_checkpoints(spec), e.checkpoints) << e.name;
  }
}

TEST(CheckpointFormat, CheckpointsFallDueEveryNIterationsAndAtEpochEnds) {
  const Schedule s{.node_count = 2, .iterations_per_epoch = 32, .epochs = 3};
  std::vector<std::int64_t> due;
  for (std::int64_t it = 1; it <= s.total_iterations(); ++it)
    if (checkpoint_due(s, 10, it - 1, it)) due.push_back(it);
  EXPECT_EQ(due, (std::vector<std::int64_t>{10, 20, 30, 32, 40, 50, 60, 64, 70, 80, 90}));
  EXPECT_FALSE(checkpoint_due(s, 0, 31, 32));   // off
  EXPECT_FALSE(checkpoint_due(s, 10, 95, 96));  // the end writes the run directory instead
  EXPECT_TRUE(checkpoint_due(s, 10, 6, 12));    // a local_sgd round of 6 steps crossing 10
  EXPECT_FALSE(checkpoint_due(s, 10, 12, 12));
}

// A server role restored from a snapshot continues exactly as the original: drive two ssgd
// servers (with momentum) through the same gradients, snapshot one mid-run into a third, and
// compare all parameters bit for bit at the end.
TEST(SsgdSnapshot, RestoredServerContinuesBitIdentically) {
  constexpr std::size_t kSize = 5;
  const int n = 2;
  const Schedule schedule{.node_count = n, .iterations_per_epoch = 4, .epochs = 2};
  const SgdOptions sgd{.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f};
  ManualClock clock;
  // With momentum and weight decay, so the optimiser's state matters for the continuation.
  std::vector<float> params_a(kSize), params_b(kSize);
  for (std::size_t i = 0; i < kSize; ++i)
    params_a[i] = 0.1f * static_cast<float>(i) - 0.2f;
  auto a = std::make_unique<SsgdServer>(
      schedule, ServerContext{.parameters = params_a, .optimizer = sgd_spec(sgd), .clock = &clock});
  // Workers whose learners have already taken `skip` steps (a resumed client skips the batches
  // its slot had drawn; the toy learner's step count plays the batch order).
  struct Workers {
    std::vector<std::unique_ptr<ToyLearner>> learners;
    std::vector<std::unique_ptr<GradientWorker>> roles;
  };
  auto make_workers = [&](int skip) {
    Workers ws;
    for (int w = 0; w < n; ++w) {
      std::vector<float> target(kSize);
      for (std::size_t i = 0; i < kSize; ++i)
        target[i] = static_cast<float>(w + 1) * static_cast<float>(i + 1);
      ws.learners.push_back(std::make_unique<ToyLearner>(target, kSize));
      for (int k = 0; k < skip; ++k)
        ws.learners.back()->compute_gradient();
      ws.roles.push_back(std::make_unique<GradientWorker>(
          WorkerContext{.learner = ws.learners.back().get(), .clock = &clock}));
    }
    return ws;
  };
  // One round: deliver `out` to the workers, compute, hand their gradients to `server`.
  auto round = [&](ServerRole& server, Workers& ws, const Outbox& out) {
    Outbox next;
    for (const auto& env : out) {
      Outbox up;
      ws.roles[env.to]->on_message(*env.message, up);
      ws.roles[env.to]->compute_step(up);
      for (const auto& g : up)
        server.on_message(env.to, *g.message, next);
    }
    return next;
  };
  Workers workers_a = make_workers(0);
  Outbox out;
  a->on_start(out);
  for (int r = 0; r < 3; ++r)
    out = round(*a, workers_a, out);
  ASSERT_EQ(a->iteration(), 3);
  const auto state = a->snapshot();
  EXPECT_EQ(a->worker_batches(0), 3);
  EXPECT_EQ(a->worker_batches(1), 3);
  params_b = params_a;  // the driver saves the parameters beside the role's state
  while (!a->finished())
    out = round(*a, workers_a, out);

  // The resumed server: built fresh, restored, started (it sends the checkpoint's parameters),
  // with new workers that continue their batch order.
  auto b = std::make_unique<SsgdServer>(
      schedule, ServerContext{.parameters = params_b, .optimizer = sgd_spec(sgd), .clock = &clock});
  b->restore(state);
  EXPECT_EQ(b->iteration(), 3);
  EXPECT_EQ(b->worker_batches(1), 3);
  Workers workers_b = make_workers(3);
  Outbox out_b;
  b->on_start(out_b);
  while (!b->finished())
    out_b = round(*b, workers_b, out_b);
  EXPECT_EQ(b->iteration(), schedule.total_iterations());
  EXPECT_EQ(params_a, params_b);
}

TEST(SsgdSnapshot, RestoreRefusesStateOfAnotherJob) {
  std::vector<float> params(5, 0.0f), other(7, 0.0f);
  ManualClock clock;
  const SgdOptions sgd{.learning_rate = 0.1f, .momentum = 0.9f};
  SsgdServer a({.node_count = 2, .iterations_per_epoch = 4, .epochs = 1},
               {.parameters = params, .optimizer = sgd_spec(sgd), .clock = &clock});
  SsgdServer three({.node_count = 3, .iterations_per_epoch = 4, .epochs = 1},
                   {.parameters = params, .optimizer = sgd_spec(sgd), .clock = &clock});
  SsgdServer bigger({.node_count = 2, .iterations_per_epoch = 4, .epochs = 1},
                    {.parameters = other, .optimizer = sgd_spec(sgd), .clock = &clock});
  const auto state = a.snapshot();
  EXPECT_THROW(three.restore(state), ConfigError);
  EXPECT_THROW(bigger.restore(state), ConfigError);
  EXPECT_THROW(a.restore(std::span(state).first(state.size() - 1)), Error);
  EXPECT_NO_THROW(a.restore(state));
}

// A role that does not implement the seam says so (its table entry would say checkpoints =
// false, and validation refuses --checkpoint_every first).
TEST(SsgdSnapshot, RolesWithoutCheckpointsSaySo) {
  struct Bare final : ServerRole {
    void on_start(Outbox&) override {}
    void on_message(NodeId, const Message&, Outbox&) override {}
    std::int64_t iteration() const override { return 0; }
    bool finished() const override { return false; }
  } bare;
  EXPECT_THROW(bare.snapshot(), ConfigError);
  EXPECT_THROW(bare.restore({}), ConfigError);
}

}  // namespace
}  // namespace psgd
