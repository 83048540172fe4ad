// Every strategy learns end to end over TCP (2 workers, a small Fashion-MNIST subset), and the
// run directory carries its accounting.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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

}  // namespace
}  // namespace psgd
