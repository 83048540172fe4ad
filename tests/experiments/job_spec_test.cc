#include "experiments/job_spec.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "experiments/cli.h"
#include "experiments/job_plan.h"
#include "nn/data_pack.h"
#include "psgd/coding_table.h"
#include "psgd/strategy_table.h"

namespace psgd {
namespace {

// The ConfigError message validate() gives for `s`, or "no error".
std::string message_of(const JobSpec& s) {
  try {
    s.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(JobSpec, DefaultsAreValid) {
  EXPECT_NO_THROW(JobSpec{}.validate());
}

TEST(JobSpec, JsonRoundTrip) {
  JobSpec a;
  a.node_count = 7;
  a.codec = "plain";
  a.learn_rate = 0.25;
  a.working_ports = {1000, 1001};
  a.seed = 99;
  JobSpec b;
  from_json(nlohmann::json(a), b);
  EXPECT_EQ(nlohmann::json(a), nlohmann::json(b));
}

TEST(JobSpec, UnknownKeyIsAnError) {
  JobSpec s;
  EXPECT_THROW(from_json(nlohmann::json{{"node_cuont", 3}}, s), ConfigError);
}

TEST(JobSpec, SinglePortMayBeANumber) {
  JobSpec s;
  from_json(nlohmann::json{{"working_ports", 4242}}, s);
  ASSERT_EQ(s.working_ports.size(), 1u);
  EXPECT_EQ(s.working_ports[0], 4242);
}

TEST(JobSpec, WrongTypeIsAConfigError) {
  JobSpec s;
  EXPECT_THROW(from_json(nlohmann::json{{"epochs", "many"}}, s), ConfigError);
}

TEST(JobSpec, ImpossibleValuesNameTheFlag) {
  JobSpec s;
  s.node_count = 0;
  EXPECT_NE(message_of(s).find("--node_count"), std::string::npos);
  s = JobSpec{};
  s.codec = "zip";
  EXPECT_NE(message_of(s).find("--codec zip"), std::string::npos);
  s = JobSpec{};
  s.redundancy = 5;
  EXPECT_NE(message_of(s).find("--redundancy"), std::string::npos);
  s = JobSpec{};
  s.psgd = "magic";
  EXPECT_NE(message_of(s).find("--psgd"), std::string::npos);
  s = JobSpec{};
  s.learn_rate = -1;
  EXPECT_NE(message_of(s).find("--learn_rate"), std::string::npos);
}

TEST(JobSpec, StrategyFlagsThatDoNotFitAreRefusedByName) {
  JobSpec s;
  s.staleness = 3;
  EXPECT_NE(message_of(s).find("--staleness applies to --psgd ssp only, not --psgd ssgd"),
            std::string::npos);
  s.psgd = "ssp";
  EXPECT_EQ(message_of(s), "no error");
  s = JobSpec{};
  s.sync_period = 4;
  EXPECT_NE(message_of(s).find("--sync_period"), std::string::npos);
  s.psgd = "local_sgd";
  EXPECT_EQ(message_of(s), "no error");
  s = JobSpec{};
  s.wait_for = 5;
  EXPECT_NE(message_of(s).find("--wait_for 5 with --node_count 4"), std::string::npos);
  s.wait_for = 3;
  EXPECT_EQ(message_of(s), "no error");
  s.psgd = "asgd";
  EXPECT_NE(message_of(s).find("--wait_for applies to --psgd ssgd"), std::string::npos);
  s = JobSpec{};
  s.staleness_lr = true;
  EXPECT_NE(message_of(s).find("--staleness_lr"), std::string::npos);
  s = JobSpec{};
  s.delay = "exp:x";
  EXPECT_NE(message_of(s).find("--delay"), std::string::npos);
  s = JobSpec{};
  s.block_assignment = "non-iid";
  EXPECT_NE(message_of(s).find("--dirichlet_alpha"), std::string::npos);
  s.dirichlet_alpha = 0.1;
  EXPECT_EQ(message_of(s), "no error");
  s.shards_per_node = 2;
  EXPECT_NE(message_of(s).find("give one"), std::string::npos);
  s = JobSpec{};
  s.shards_per_node = 2;
  EXPECT_NE(message_of(s).find("--shards_per_node applies to --block_assignment non-iid"),
            std::string::npos);
  s = JobSpec{};
  s.block_assignment = "contiguous";
  EXPECT_EQ(message_of(s), "no error");
  s.dirichlet_alpha = 0.5;
  EXPECT_NE(message_of(s).find("not --block_assignment contiguous"), std::string::npos);
  s = JobSpec{};
  s.block_assignment = "sorted";
  EXPECT_NE(message_of(s).find("choose one of: iid, non-iid, contiguous"), std::string::npos);
  EXPECT_EQ(JobSpec{}.ssp_staleness(), 2);
  EXPECT_EQ(JobSpec{}.local_sync_period(), 4);
}

// --allreduce_on_loss: allreduce's knob; shrink needs our ring (a Gloo or shm group cannot change
// its members) and is refused with --checkpoint_every (a checkpoint cannot record the shrunk ring).
TEST(JobSpec, AllreduceOnLossIsRefusedWhereItCannotBeHonoured) {
  JobSpec s;
  s.allreduce_on_loss = "shrink";
  EXPECT_NE(message_of(s).find("--allreduce_on_loss applies to --psgd allreduce only"),
            std::string::npos)
      << message_of(s);
  s.psgd = "allreduce";
  EXPECT_EQ(message_of(s), "no error");
  for (const char* backend : {"gloo", "shm"}) {
    s.allreduce_backend = backend;
    EXPECT_NE(message_of(s).find("its group cannot change its members once formed"),
              std::string::npos)
        << message_of(s);
  }
  s.allreduce_backend = "ring";
  // A compression whose state depends on the ring's size cannot follow it; plain can.
  for (const char* codec : {"fp16", "powersgd"}) {
    s.codec = codec;
    EXPECT_NE(message_of(s).find("this compression cannot follow a ring that shrinks"),
              std::string::npos)
        << codec << ": " << message_of(s);
  }
  s.codec = "plain";
  s.checkpoint_every = 10;
  EXPECT_NE(message_of(s).find("--checkpoint_every with --allreduce_on_loss shrink"),
            std::string::npos)
      << message_of(s);
  s.checkpoint_every = 0;
  s.allreduce_on_loss = "wait";
  EXPECT_NE(message_of(s).find("--allreduce_on_loss wait: choose fail or shrink"),
            std::string::npos)
      << message_of(s);
  s.allreduce_on_loss = "fail";
  s.checkpoint_every = 10;
  EXPECT_EQ(message_of(s), "no error");
}

// --overlap: ssgd's (a checkpoint cannot hold the gradient a worker computed ahead) and
// allreduce's (no delay: its checkpoints are allreduce's); no other strategy's.
TEST(JobSpec, OverlapIsRefusedWithCheckpointsUnderSsgdOnly) {
  JobSpec s;
  s.overlap = true;
  EXPECT_EQ(message_of(s), "no error");
  s.checkpoint_every = 10;
  EXPECT_NE(message_of(s).find("--checkpoint_every with --overlap"), std::string::npos)
      << message_of(s);
  s.psgd = "allreduce";
  EXPECT_EQ(message_of(s), "no error");
  s.checkpoint_every = 0;
  s.psgd = "asgd";
  EXPECT_NE(message_of(s).find("--overlap applies to --psgd"), std::string::npos) << message_of(s);
}

TEST(JobSpec, ModelAverageIsParsedAndRefusedWhereNoServerHoldsTheModel) {
  JobSpec s;
  EXPECT_EQ(s.model_average_decay(), 0.0) << "auto: ssgd evaluates its last iterate";
  s.psgd = "asgd";
  EXPECT_DOUBLE_EQ(s.model_average_decay(), 0.99) << "auto: asgd its average";
  s.psgd = "ssp";
  EXPECT_DOUBLE_EQ(s.model_average_decay(), 0.99) << "auto: ssp its average";
  s.psgd = "local_sgd";
  EXPECT_EQ(s.model_average_decay(), 0.0);
  s.model_average = "off";
  EXPECT_EQ(s.model_average_decay(), 0.0);
  s = JobSpec{};
  s.model_average = "ema:0.99";
  EXPECT_EQ(message_of(s), "no error");
  EXPECT_DOUBLE_EQ(s.model_average_decay(), 0.99);
  s.model_average = "ema:1.5";
  EXPECT_NE(message_of(s).find("--model_average ema:1.5"), std::string::npos);
  s.model_average = "ema:0.99";
  s.psgd = "allreduce";
  EXPECT_NE(message_of(s).find("--model_average ema:0.99 with --psgd allreduce"),
            std::string::npos);
  s.model_average = "off";
  EXPECT_EQ(message_of(s), "no error");
  EXPECT_EQ(s.model_average_decay(), 0.0);
  s = JobSpec{};
  s.model_average = "ema:0.9";
  s.checkpoint_every = 10;  // checkpoints hold the average (issue 21)
  EXPECT_EQ(message_of(s), "no error");
}

// Regression targets and image layouts (issue 17): combinations that cannot work are refused in
// one line naming the flags.
TEST(JobSpec, TargetAndLayoutCombinationsThatCannotWorkAreRefused) {
  JobSpec s;
  s.target = "regression";
  s.dataset = "csv:x.csv";
  s.label_column = "y1,y2";
  EXPECT_EQ(message_of(s), "no error");
  s.block_assignment = "non-iid";
  s.shards_per_node = 2;
  EXPECT_NE(message_of(s).find("--block_assignment non-iid with --target regression"),
            std::string::npos)
      << message_of(s);
  s = JobSpec{};
  s.target = "regression";
  s.model = "autoencoder";
  EXPECT_NE(message_of(s).find("--target xx"), std::string::npos) << message_of(s);
  s = JobSpec{};
  s.target = "regression";
  s.label_column = "none";
  EXPECT_NE(message_of(s).find("--label_column none with --target regression"), std::string::npos);
  s = JobSpec{};
  s.label_column = "y1,y2";
  EXPECT_NE(message_of(s).find("need --target regression"), std::string::npos) << message_of(s);
  s = JobSpec{};
  s.target = "regress";
  EXPECT_NE(message_of(s).find("choose one of: xy, xx, regression"), std::string::npos);
  s = JobSpec{};
  s.image_layout = "nhwc";
  EXPECT_NE(message_of(s).find("--image_layout nhwc with --dataset fashion-mnist"),
            std::string::npos)
      << message_of(s);
  s.dataset = "npz:x.npz";
  EXPECT_EQ(message_of(s), "no error");
  s.image_layout = "hwc";
  EXPECT_NE(message_of(s).find("choose one of: auto, nchw, nhwc"), std::string::npos);
}

TEST(JobSpec, ConfigHashIgnoresWhereTheRunIsWritten) {
  JobSpec a, b;
  b.output = "elsewhere";
  b.working_ports = {0};
  b.threads = 3;
  b.checkpoint_every = 7;
  b.save_every_epoch = true;
  b.join_timeout = 1;
  EXPECT_EQ(job_config_hash(a), job_config_hash(b));
  b.seed = 2;
  EXPECT_NE(job_config_hash(a), job_config_hash(b));
}

// Every strategy and coded scheme checkpoints (issue 21); one that could not would be refused
// in one line by validate(), naming the strategy (psgd/strategy_table.h: checkpoints).
TEST(JobSpec, EveryStrategyAndCodedSchemeTakesCheckpointEvery) {
  for (const StrategyEntry& e : strategy_table()) {
    JobSpec spec;
    spec.checkpoint_every = 10;
    spec.psgd = std::string(e.name);
    EXPECT_NO_THROW(spec.validate()) << e.name << ": " << message_of(spec);
  }
  for (const CodingEntry& e : coding_table()) {
    JobSpec spec;
    spec.checkpoint_every = 10;
    spec.node_count = 4;
    spec.redundancy = 2;
    spec.psgd = std::string(e.strategy);
    spec.codec = std::string(e.name);
    EXPECT_NO_THROW(spec.validate()) << e.name << ": " << message_of(spec);
  }
}

// --model script:FILE: the file's content is part of the job (a checkpoint of the same flags with
// another file belongs to another job), and a worker loads the file it received only when its
// hash is the one the server sent.
TEST(JobSpec, AModelFileIsPartOfTheJobAndArrivesIntactOrNotAtAll) {
  JobSpec spec;
  spec.model = "script:/models/net.pt";
  const std::string a(64, 'a'), b(64, 'b');
  EXPECT_NE(job_config_hash(spec, a), job_config_hash(spec, b));
  EXPECT_NE(job_config_hash(spec, a), job_config_hash(spec));
  EXPECT_EQ(job_config_hash(spec, a), job_config_hash(spec, a));

  const std::string bytes = "a TorchScript archive";
  const std::string sha =
      nn::sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  const auto received = received_model_file(spec, bytes, sha);
  ASSERT_NE(received, nullptr);
  EXPECT_EQ(*received, bytes);
  std::string damaged = bytes;
  damaged[3] ^= 1;
  try {
    received_model_file(spec, damaged, sha);
    ADD_FAILURE() << "a damaged file was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("is damaged"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(sha), std::string::npos) << e.what();
  }
  EXPECT_THROW(received_model_file(spec, "", sha), ConfigError);
  spec.model = "mlp";  // a built-in model: nothing to receive
  EXPECT_EQ(received_model_file(spec, "", ""), nullptr);
}

// --ship_data grew from a bool into never|auto|always: the bare flag and JSON true still mean
// always, JSON false never, so old configs, manifests and checkpoints keep their meaning.
ServerOptions parse_flags(std::vector<std::string> args) {
  args.insert(args.begin(), "init_server");
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  ServerOptions out;
  EXPECT_EQ(parse_server_args(static_cast<int>(argv.size()), argv.data(), out), kContinue);
  return out;
}

TEST(JobSpec, ShipDataKeepsItsOldSpellingsAndTakesAuto) {
  EXPECT_EQ(JobSpec{}.ship_data.value, "never");
  EXPECT_EQ(parse_flags({}).spec.ship_data.value, "never");
  EXPECT_EQ(parse_flags({"--ship_data"}).spec.ship_data.value, "always");
  EXPECT_EQ(parse_flags({"--ship_data", "--epochs", "3"}).spec.ship_data.value, "always");
  EXPECT_EQ(parse_flags({"--ship_data", "auto"}).spec.ship_data.value, "auto");
  EXPECT_EQ(parse_flags({"--ship_data=never"}).spec.ship_data.value, "never");
  for (const auto& [json, word] : std::vector<std::pair<nlohmann::json, std::string>>{
           {true, "always"}, {false, "never"}, {"auto", "auto"}, {"always", "always"}}) {
    JobSpec s;
    from_json(nlohmann::json{{"ship_data", json}}, s);
    EXPECT_EQ(s.ship_data.value, word) << json;
    EXPECT_EQ(nlohmann::json(s)["ship_data"], word) << "config.json writes the word";
  }
  JobSpec s;
  EXPECT_THROW(from_json(nlohmann::json{{"ship_data", 1}}, s), ConfigError);
  s.ship_data.value = "sometimes";
  EXPECT_NE(message_of(s).find("--ship_data sometimes: choose never"), std::string::npos)
      << message_of(s);
  // The hash of a job is what it was when the flag was a bool (a checkpoint still resumes), and
  // auto and always fetch the same rows.
  JobSpec never, always, autom;
  always.ship_data.value = "always";
  autom.ship_data.value = "auto";
  EXPECT_EQ(job_config_hash(always), job_config_hash(autom));
  EXPECT_NE(job_config_hash(never), job_config_hash(always));
  nlohmann::json old = never;
  old["ship_data"] = false;
  JobSpec from_old;
  from_json(old, from_old);
  EXPECT_EQ(job_config_hash(from_old), job_config_hash(never));
}

// After a loss the strategy cannot survive, the server suggests a change only when the whole job
// with it would pass the checks: never a flag --check would then refuse (found by hand: shrink
// was suggested to a powersgd or checkpointing ring, --wait_for to ssgd --overlap).
TEST(JobSpecLossHint, NeverSuggestsAJobThatWouldBeRefused) {
  auto job = [](const std::string& psgd) {
    JobSpec spec;
    spec.psgd = psgd;
    spec.node_count = 3;
    return spec;
  };
  JobSpec ring = job("allreduce");
  EXPECT_EQ(loss_hint(ring, 2), " (--allreduce_on_loss shrink lets the others carry on)");
  for (const char* codec : {"powersgd", "fp16"}) {  // compressions that cannot follow a shrink
    JobSpec compressed = ring;
    compressed.codec = codec;
    compressed.validate();
    EXPECT_EQ(loss_hint(compressed, 2), "") << codec;
  }
  JobSpec checkpointed = ring;
  checkpointed.checkpoint_every = 30;
  checkpointed.validate();
  EXPECT_EQ(loss_hint(checkpointed, 2), "");
  for (const char* backend : {"gloo", "shm"}) {  // their groups cannot change members
    JobSpec group = ring;
    group.allreduce_backend = backend;
    group.validate();
    EXPECT_EQ(loss_hint(group, 2), "") << backend;
  }

  JobSpec ssgd = job("ssgd");
  EXPECT_EQ(loss_hint(ssgd, 2),
            " (--wait_for k < node_count lets ssgd carry on with the survivors)");
  JobSpec overlap = ssgd;
  overlap.overlap = true;
  overlap.validate();
  EXPECT_EQ(loss_hint(overlap, 2), "");
  // What only says how things stand needs no check.
  JobSpec waiting = ssgd;
  waiting.wait_for = 2;
  EXPECT_EQ(loss_hint(waiting, 1),
            " (each round needs --wait_for 2 gradients and 1 worker is left)");
}

}  // namespace
}  // namespace psgd
