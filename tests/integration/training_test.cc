// init_server and client processes train on loopback and leave a complete run directory.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::Cluster;
using testing::have_fashion_mnist;
using testing::read_file;

TEST(Training, TwoWorkersLearnFashionMnistAndWriteTheRunDirectory) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(
      c.start(2, {"--train_samples", "6000", "--test_samples", "2000", "--epochs", "2",
                  "--batch_size", "32", "--learn_rate", "0.05", "--seed", "7"}));
  auto server_code = c.server->wait(180s);
  ASSERT_TRUE(server_code.has_value()) << "server hung\n" << c.logs();
  EXPECT_EQ(*server_code, 0) << c.logs();
  for (auto& client : c.clients) {
    auto code = client->wait(30s);
    ASSERT_TRUE(code.has_value()) << c.logs();
    EXPECT_EQ(*code, 0) << c.logs();
  }

  const std::string run = c.dir.file("run");
  auto summary = nlohmann::json::parse(read_file(run + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["nodes"], 2);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_EQ(summary["iterations"], 2 * 94);  // ceil(6000 / (2 * 32)) per epoch
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << "chance is 0.1";
  EXPECT_GE(summary["best_test_accuracy"].get<double>(),
            summary["final_test_accuracy"].get<double>());
  EXPECT_GT(summary["bytes_up"].get<double>(), 0);
  EXPECT_TRUE(summary["virtual_seconds"].is_null());

  auto config = nlohmann::json::parse(read_file(run + "/config.json"));
  EXPECT_EQ(config["job"]["node_count"], 2);
  EXPECT_EQ(config["job"]["codec"], "plain");
  EXPECT_EQ(config["seed"], 7);
  EXPECT_EQ(config["workers"].size(), 2u);
  EXPECT_TRUE(config["provenance"].contains("psgd_revision"));

  const std::string metrics = read_file(run + "/metrics.csv");
  EXPECT_EQ(metrics.rfind("epoch,iteration,wall_s,virtual_s,train_loss,test_loss,test_accuracy,"
                          "bytes_up,bytes_down",
                          0),
            0u);
  EXPECT_EQ(testing::count_lines(metrics), 4) << metrics;  // header, epochs 0, 1, 2
  const std::string workers = read_file(run + "/workers.csv");
  EXPECT_EQ(testing::count_lines(workers), 5) << workers;  // header, 2 epochs x 2 workers
  EXPECT_GT(std::filesystem::file_size(run + "/model.pt"), 1000u);
  EXPECT_GT(std::filesystem::file_size(run + "/state_dict.pt"), 1000u);
}

// metrics.csv without the wall_s column (the only one that depends on the machine's speed).
std::string metrics_without_wall_time(const std::string& run) {
  std::istringstream in(read_file(run + "/metrics.csv"));
  std::string line, out;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream row(line);
    while (std::getline(row, cell, ','))
      cells.push_back(cell);
    if (cells.size() > 2) cells.erase(cells.begin() + 2);
    for (const auto& c : cells)
      out += c + ",";
    out += "\n";
  }
  return out;
}

// The second run sends every frame over TCP, the first through shared memory (all on one host):
// the transport must not change a bit of the run, nor the bytes it reports.
TEST(Training, TheSameSeedGivesTheSameRunOverSharedMemoryAndOverTcp) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::vector<std::string> metrics;
  for (const std::string shm : {"on", "off"}) {
    Cluster c;
    ASSERT_NO_FATAL_FAILURE(
        c.start(3, {"--train_samples", "3000", "--test_samples", "1000", "--epochs", "2",
                    "--batch_size", "16", "--seed", "11", "--shared_memory", shm}));
    auto code = c.server->wait(120s);
    ASSERT_TRUE(code.has_value()) << c.logs();
    ASSERT_EQ(*code, 0) << c.logs();
    const bool said = c.server->out().find(
                          "3 of 3 workers exchange frames through shared "
                          "memory") != std::string::npos;
    EXPECT_EQ(said, shm == "on") << c.logs();
    metrics.push_back(metrics_without_wall_time(c.dir.file("run")));
  }
  EXPECT_EQ(metrics[0], metrics[1]) << "bit-identical losses, accuracies and bytes for one seed";
}

TEST(Training, ADeadWorkerEndsTheRunWithAClearStatusInsteadOfAHang) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(2, {"--train_samples", "6000", "--test_samples", "500",
                                      "--epochs", "1000", "--batch_size", "16"}));
  // Wait until training is under way, then kill one worker.
  for (int i = 0; i < 600 && c.server->out().find("training for") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_NE(c.server->out().find("training for"), std::string::npos) << c.logs();
  c.clients[1]->kill();
  auto code = c.server->wait(30s);
  ASSERT_TRUE(code.has_value()) << "server did not notice the dead worker\n" << c.logs();
  EXPECT_EQ(*code, 1);
  EXPECT_NE(c.server->err().find("lost worker"), std::string::npos) << c.logs();
  auto survivor = c.clients[0]->wait(30s);
  ASSERT_TRUE(survivor.has_value()) << c.logs();
  EXPECT_EQ(*survivor, 1);
  auto summary = nlohmann::json::parse(read_file(c.dir.file("run") + "/summary.json"));
  EXPECT_NE(summary["status"].get<std::string>().find("lost worker"), std::string::npos);
}

TEST(Training, AnExtraClientIsRefusedWithAReason) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(c.start(1, {"--train_samples", "2000", "--test_samples", "500",
                                      "--epochs", "1000", "--batch_size", "16"}));
  for (int i = 0; i < 600 && c.server->out().find("training for") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  auto extra =
      testing::run(PSGD_CLIENT, {"--ip", "127.0.0.1", "--port", std::to_string(c.port)}, c.dir, 30);
  EXPECT_EQ(extra.code, 1);
  EXPECT_NE(extra.err.find("already has its 1 workers"), std::string::npos) << extra.err;
  c.server->kill();
}

}  // namespace
}  // namespace psgd
