// init_server and client processes train on loopback and leave a complete run directory.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <thread>

#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::read_file;
using testing::TempDir;

bool have_fashion_mnist() {
  return std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

// Waits until the server has written its port file; returns the port or 0.
int wait_for_port(const std::string& port_file, Process& server) {
  for (int i = 0; i < 600; ++i) {
    const std::string s = read_file(port_file);
    if (!s.empty() && s.back() == '\n') return std::stoi(s);
    if (!server.running()) return 0;  // exited early
    std::this_thread::sleep_for(50ms);
  }
  return 0;
}

struct Cluster {
  TempDir dir;
  std::unique_ptr<Process> server;
  std::vector<std::unique_ptr<Process>> clients;
  int port = 0;

  void start(int nodes, std::vector<std::string> extra) {
    std::vector<std::string> args{"--node_count",    std::to_string(nodes),
                                  "--working_ports", "0",
                                  "--port_file",     dir.file("port"),
                                  "--output",        dir.file("run"),
                                  "--bind",          "127.0.0.1",
                                  "--join_timeout",  "60",
                                  "--io_timeout",    "30"};
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<Process>(PSGD_INIT_SERVER, args, dir.file("server.out"),
                                       dir.file("server.err"));
    port = wait_for_port(dir.file("port"), *server);
    ASSERT_GT(port, 0) << server->out() << server->err();
    for (int i = 0; i < nodes; ++i) {
      clients.push_back(std::make_unique<Process>(
          PSGD_CLIENT,
          std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port),
                                   "--connect_timeout", "10"},
          dir.file("client" + std::to_string(i) + ".out"),
          dir.file("client" + std::to_string(i) + ".err")));
    }
  }

  std::string logs() const {
    std::string s = "--- server\n" + server->out() + server->err();
    for (std::size_t i = 0; i < clients.size(); ++i) {
      s += "--- client " + std::to_string(i) + "\n" + clients[i]->out() + clients[i]->err();
    }
    return s;
  }
};

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

TEST(Training, TheSameSeedGivesTheSameRun) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::vector<std::string> metrics;
  for (int run = 0; run < 2; ++run) {
    Cluster c;
    ASSERT_NO_FATAL_FAILURE(c.start(3, {"--train_samples", "3000", "--test_samples", "1000",
                                        "--epochs", "2", "--batch_size", "16", "--seed", "11"}));
    auto code = c.server->wait(120s);
    ASSERT_TRUE(code.has_value()) << c.logs();
    ASSERT_EQ(*code, 0) << c.logs();
    metrics.push_back(metrics_without_wall_time(c.dir.file("run")));
  }
  EXPECT_EQ(metrics[0], metrics[1]) << "bit-identical losses and accuracies for one seed";
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
