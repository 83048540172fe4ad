// Every strategy learns end to end over TCP (2 workers, a small Fashion-MNIST subset), and the
// run directory carries its accounting.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::read_file;

struct Case {
  std::string name;
  std::vector<std::string> flags;
  std::vector<std::vector<std::string>> client_flags;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class StrategyLearns : public ::testing::TestWithParam<Case> {};

TEST_P(StrategyLearns, AboveChanceWithItsAccounting) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const Case& c = GetParam();
  Cluster cluster;
  std::vector<std::string> flags{"--train_samples", "4000", "--test_samples", "1000",
                                 "--epochs",        "2",    "--batch_size",   "32",
                                 "--seed",          "3"};
  flags.insert(flags.end(), c.flags.begin(), c.flags.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags, c.client_flags));
  auto code = cluster.server->wait(std::chrono::seconds(120));
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  for (auto& client : cluster.clients) {
    auto cc = client->wait(std::chrono::seconds(30));
    ASSERT_TRUE(cc.has_value()) << cluster.logs();
    EXPECT_EQ(*cc, 0) << cluster.logs();
  }
  const std::string run = cluster.dir.file("run");
  auto summary = nlohmann::json::parse(read_file(run + "/summary.json"));
  auto config = nlohmann::json::parse(read_file(run + "/config.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.55) << "chance is 0.1\n"
                                                                << summary.dump(1);
  ASSERT_EQ(summary["workers"].size(), 2u);
  ASSERT_EQ(config["workers"].size(), 2u);
  std::int64_t held = 0;
  for (const auto& w : config["workers"]) {
    for (const auto& n : w["label_histogram"])
      held += n.get<std::int64_t>();
  }
  EXPECT_EQ(held, 4000) << "every training sample on exactly one worker";

  const std::string psgd = config["job"]["psgd"];
  if (psgd == "asgd" || psgd == "ssp") {
    EXPECT_EQ(summary["iterations"], 2 * 2 * 63);  // node_count x ceil(4000 / 64) per epoch
    EXPECT_GT(summary["staleness_max"].get<int>(), 0) << summary.dump(1);
  }
  if (psgd == "ssp") {
    EXPECT_LE(summary["staleness_max"].get<int>(), 2 * (1 + 1)) << "bounded by n * (s + 1)";
  }
  if (psgd == "local_sgd") {
    EXPECT_EQ(summary["iterations"], 2 * 63);
    EXPECT_EQ(summary["workers"][0]["local_steps"], 2 * 63);
    EXPECT_LT(summary["workers"][0]["contributions"].get<int>(), 2 * 63 / 3);
  }
  if (psgd == "allreduce" ||
      psgd == "broadcast") {  // the server checked the workers' parameter hashes each epoch
    EXPECT_EQ(summary["iterations"], 2 * 63);
  }
  if (psgd == "ssgd") {  // --wait_for 1 with a slow worker: it is dropped now and then
    EXPECT_EQ(summary["rounds_short"], 2 * 63);
    EXPECT_GT(summary["dropped_gradients"].get<int>(), 0);
    // Worker ids follow the join order: one of the two is the slowed client.
    EXPECT_EQ(config["workers"][0]["slowdown"].get<double>() *
                  config["workers"][1]["slowdown"].get<double>(),
              3.0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, StrategyLearns,
    ::testing::Values(
        Case{"asgd", {"--psgd", "asgd", "--learn_rate", "0.05"}, {}},
        Case{"ssp", {"--psgd", "ssp", "--staleness", "1"}, {{}, {"--slowdown", "2"}}},
        Case{"local_sgd", {"--psgd", "local_sgd", "--sync_period", "4"}, {}},
        Case{"local_sgd_noniid",
             {"--psgd", "local_sgd", "--block_assignment", "non-iid", "--shards_per_node", "5"},
             {}},
        Case{"ssgd_wait_for", {"--wait_for", "1"}, {{}, {"--slowdown", "3"}}},
        Case{"allreduce_ring", {"--psgd", "allreduce"}, {}},
        Case{"allreduce_gloo", {"--psgd", "allreduce", "--allreduce_backend", "gloo"}, {}},
        Case{"broadcast_topk", {"--psgd", "broadcast", "--codec", "topk"}, {}}),
    [](const auto& info) { return info.param.name; });

// ccdc (psgd/coded/ccdc.h): 4 workers, r = 2, 6 blocks; learns, the models stay identical (the
// server checks the hashes each epoch), and the peer bytes are ccdc's: below broadcast's at the
// same n.
TEST(Ccdc, FourWorkersRedundancyTwoLearnWithFewerPeerBytesThanBroadcast) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto run = [](const std::string& codec) {
    Cluster cluster;
    cluster.start(
        4, {"--train_samples", "4800", "--test_samples", "1000", "--epochs", "2", "--batch_size",
            "32", "--seed", "3", "--redundancy", "2", "--psgd", "broadcast", "--codec", codec});
    auto code = cluster.server->wait(std::chrono::seconds(120));
    EXPECT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
    EXPECT_EQ(code.value_or(-1), 0) << cluster.logs();
    for (auto& client : cluster.clients)
      EXPECT_EQ(client->wait(std::chrono::seconds(30)).value_or(-1), 0) << cluster.logs();
    return nlohmann::json::parse(read_file(cluster.dir.file("run") + "/summary.json"));
  };
  const auto ccdc = run("ccdc");
  EXPECT_EQ(ccdc["status"], "completed");
  EXPECT_GT(ccdc["final_test_accuracy"].get<double>(), 0.55) << ccdc.dump(1);
  // An epoch is one pass: ceil(4800 / (C(4,2) = 6 blocks x 32)) = 25 iterations.
  EXPECT_EQ(ccdc["iterations"], 2 * 25);
  EXPECT_EQ(ccdc["samples"], 2 * 25 * 6 * 32);
  const auto plain = run("plain");
  EXPECT_EQ(plain["status"], "completed");
  const double per_iter_ccdc =
      ccdc["peer_bytes_per_worker"].get<double>() / ccdc["iterations"].get<double>();
  const double per_iter_plain =
      plain["peer_bytes_per_worker"].get<double>() / plain["iterations"].get<double>();
  // Per iteration 1.5·d against 3·d (psgd/coded/ccdc.h), up to the frames' headers.
  EXPECT_NEAR(per_iter_ccdc / per_iter_plain, 0.5, 0.01) << ccdc.dump(1) << plain.dump(1);
  EXPECT_LT(ccdc["peer_bytes_per_worker"].get<double>(),
            plain["peer_bytes_per_worker"].get<double>());
  EXPECT_LT(ccdc["peer_multicast_bytes_per_worker"].get<double>(),
            ccdc["peer_bytes_per_worker"].get<double>());
}

// Compressed allreduce (psgd/allreduce_compression.h), 4 workers on the MLP: fp16 and PowerSGD
// learn, the models stay identical (the server compares hashes each epoch), and the ring moves
// the bytes their formulas say against plain fp32: half for fp16; for PowerSGD rank 4 the MLP
// 784-256-10 sends (256 + 10) + (256 + 10) 4 + (784 + 256) 4 values instead of 203,530.
TEST(CompressedAllreduce, FourWorkersLearnWithFp16AndPowerSgdAndSendWhatTheFormulaSays) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto run = [](const std::string& codec) {
    Cluster cluster;
    cluster.start(4, {"--train_samples", "4000", "--test_samples", "1000", "--epochs", "2",
                      "--batch_size", "32", "--seed", "3", "--psgd", "allreduce", "--codec", codec,
                      "--learn_rate", "0.1", "--momentum", "0.9"});
    auto code = cluster.server->wait(std::chrono::seconds(180));
    EXPECT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
    EXPECT_EQ(code.value_or(-1), 0) << cluster.logs();
    for (auto& client : cluster.clients)
      EXPECT_EQ(client->wait(std::chrono::seconds(30)).value_or(-1), 0) << cluster.logs();
    return nlohmann::json::parse(read_file(cluster.dir.file("run") + "/summary.json"));
  };
  const auto plain = run("plain");
  const auto fp16 = run("fp16");
  const auto power = run("powersgd");
  for (const auto* s : {&plain, &fp16, &power}) {
    EXPECT_EQ((*s)["status"], "completed");
    EXPECT_EQ((*s)["iterations"], 2 * 32);  // ceil(4000 / (4 x 32)) per epoch
    EXPECT_GT((*s)["final_test_accuracy"].get<double>(), 0.55) << s->dump(1);
  }
  const double plain_bytes = plain["peer_bytes_per_worker"].get<double>();
  // Half, up to one padding half per odd-length chunk (psgd/ring_allreduce.h).
  EXPECT_NEAR(fp16["peer_bytes_per_worker"].get<double>() / plain_bytes, 0.5, 1e-4);
  const double values = 203530, compressed = 266 + 266 * 4 + 1040 * 4;
  EXPECT_NEAR(power["peer_bytes_per_worker"].get<double>() / plain_bytes, compressed / values,
              1e-3);
}

TEST(Ccdc, AWorkerThatDiesFailsTheOthersWithAClearErrorInsteadOfAHang) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  using namespace std::chrono_literals;
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(
      4,
      {"--train_samples", "4800", "--test_samples", "500", "--epochs", "1000", "--batch_size", "16",
       "--redundancy", "2", "--psgd", "broadcast", "--codec", "ccdc", "--dead_after", "3"}));
  for (int i = 0; i < 600 && c.server->out().find("training for") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(c.server->out().find("training for"), std::string::npos) << c.logs();
  std::this_thread::sleep_for(300ms);
  const auto killed = std::chrono::steady_clock::now();
  c.clients[2]->kill();
  auto code = c.server->wait(30s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << c.logs();
  EXPECT_EQ(*code, 1) << c.logs();
  for (int i : {0, 1, 3}) {
    auto survivor = c.clients[static_cast<std::size_t>(i)]->wait(30s);
    ASSERT_TRUE(survivor.has_value()) << "client " << i << " hung\n" << c.logs();
    EXPECT_EQ(*survivor, 1) << c.logs();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 15s) << c.logs();
  const std::string logs = c.logs();
  EXPECT_TRUE(logs.find("lost peer worker") != std::string::npos ||
              logs.find("lost worker") != std::string::npos)
      << logs;
}

// A worker that computes step after step without waiting for any message (allreduce with one
// worker, slowed by --delay) must still send heartbeats: the run outlasts --dead_after several
// times over and must not lose its worker.
TEST(Liveness, AWorkerComputingManyStepsInARowKeepsItsLinkAlive) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(1, {"--train_samples", "1600", "--test_samples", "200", "--epochs", "1",
                        "--batch_size", "16", "--psgd", "allreduce", "--delay", "fixed:0.03",
                        "--heartbeat_interval", "0.3", "--dead_after", "1"}));
  auto code = cluster.server->wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs();
  auto summary = nlohmann::json::parse(read_file(cluster.dir.file("run") + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed") << summary.dump(1);
  EXPECT_GE(summary["wall_seconds"].get<double>(), 2.0) << "the run must outlast --dead_after";
}

}  // namespace
}  // namespace psgd
