// init_server --simulate as a process: it learns, and its ssgd model equals the TCP run's.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tests/experiments/event_reader.h"
#include "tests/integration/cluster.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::have_fashion_mnist;
using testing::Process;
using testing::read_file;
using testing::TempDir;

const std::vector<std::string> kJob{
    "--node_count", "2",  "--train_samples", "3000", "--test_samples", "1000", "--epochs",  "2",
    "--batch_size", "32", "--learn_rate",    "0.05", "--seed",         "9",    "--threads", "1"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Column `col` of every row of a CSV file (header skipped).
std::vector<std::string> column(const std::string& csv, int col) {
  std::vector<std::string> out;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string cell;
    for (int i = 0; i <= col && std::getline(row, cell, ','); ++i) {
    }
    out.push_back(cell);
  }
  return out;
}

TEST(Simulate, LearnsAndWritesTheRunDirectoryWithVirtualTime) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  auto r = testing::run(PSGD_INIT_SERVER,
                        with(kJob, {"--simulate", "--output", dir.file("sim"), "--net_bandwidth",
                                    "100Mbps", "--net_latency", "1ms", "--sim_compute", "fixed:5ms",
                                    "--timeline", "--tensorboard"}),
                        dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto summary = nlohmann::json::parse(read_file(dir.file("sim") + "/summary.json"));
  {
    // --timeline: the real run's Chrome trace, in virtual time: every compute slice is the
    // simulated 5 ms, and the trace ends when the virtual clock does.
    SCOPED_TRACE("timeline.json");
    const auto trace = nlohmann::json::parse(read_file(dir.file("sim") + "/timeline.json"));
    int computes = 0;
    double end_us = 0;
    for (const auto& e : trace.at("traceEvents")) {
      if (e.at("ph") != "X") continue;
      end_us = std::max(end_us, e.at("ts").get<double>() + e.at("dur").get<double>());
      if (e.at("name") != "compute") continue;
      ++computes;
      EXPECT_NEAR(e.at("dur").get<double>(), 5000.0, 1.0);
    }
    EXPECT_EQ(computes, 2 * 2 * 47);  // each worker computes every iteration
    EXPECT_NEAR(end_us / 1e6, summary["virtual_seconds"].get<double>(), 1e-3);
  }
  {
    // --tensorboard: a real run's scalars per epoch, and the virtual time (it wrote nothing).
    SCOPED_TRACE("tensorboard");
    std::vector<std::string> files;
    for (const auto& f : std::filesystem::directory_iterator(dir.file("sim") + "/tensorboard"))
      files.push_back(f.path().string());
    ASSERT_EQ(files.size(), 1u);
    const auto events = testing::read_events(files[0]);
    ASSERT_EQ(events.size(), 4u);  // file version, epochs 0, 1, 2
    const auto& last = events.back();
    EXPECT_EQ(last.step, 2);
    EXPECT_FLOAT_EQ(last.scalars.at("accuracy/test"),
                    static_cast<float>(summary["final_test_accuracy"].get<double>()));
    EXPECT_FLOAT_EQ(last.scalars.at("time/virtual_s"),
                    static_cast<float>(summary["virtual_seconds"].get<double>()));
  }
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["iterations"], 2 * 47);  // ceil(3000 / (2 * 32)) per epoch
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << "chance is 0.1";
  EXPECT_GT(summary["virtual_seconds"].get<double>(), 0.0);
  const std::string metrics = read_file(dir.file("sim") + "/metrics.csv");
  const auto wall = column(metrics, 2), virt = column(metrics, 3);
  ASSERT_EQ(virt.size(), 3u) << metrics;
  EXPECT_EQ(wall, (std::vector<std::string>{"", "", ""})) << "real time is in summary.json only";
  EXPECT_EQ(virt[0], "0");
  EXPECT_GT(std::stod(virt[2]), std::stod(virt[1]));
  EXPECT_EQ(testing::count_lines(read_file(dir.file("sim") + "/workers.csv")), 5);
}

// asgd evaluates and saves an exponential average of its parameters by default
// (--model_average auto): the run says so, records the last iterate's accuracy beside it, and the
// saved model is the one evaluated.
TEST(Simulate, AsgdEvaluatesAndSavesItsAveragedModel) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  auto r = testing::run(PSGD_INIT_SERVER,
                        with(kJob, {"--simulate", "--psgd", "asgd", "--output", dir.file("sim"),
                                    "--sim_compute", "fixed:5ms"}),
                        dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto summary = nlohmann::json::parse(read_file(dir.file("sim") + "/summary.json"));
  const auto config = nlohmann::json::parse(read_file(dir.file("sim") + "/config.json"));
  EXPECT_EQ(summary["evaluated_model"], "ema:0.99");
  EXPECT_EQ(config["model_average"]["kind"], "ema");
  EXPECT_EQ(config["job"]["model_average"], "auto");
  const double averaged = summary["final_test_accuracy"].get<double>();
  const double iterate = summary["final_iterate_test_accuracy"].get<double>();
  EXPECT_GT(averaged, 0.6) << "chance is 0.1";
  EXPECT_GT(iterate, 0.6);
  EXPECT_NE(summary["final_test_loss"], summary["final_iterate_test_loss"])
      << "two different models were evaluated";
  const auto out = testing::run(PSGD_EVALUATE, {dir.file("sim"), "--json"}, dir, 60);
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(out.out)["test_accuracy"].get<double>(), averaged)
      << "model.pt is the averaged model";
}

TEST(Simulate, SsgdEndsWithTheSameModelAsTheTcpRunOfTheSameSeed) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  Process server(PSGD_INIT_SERVER,
                 with(kJob, {"--working_ports", "0", "--port_file", dir.file("port"), "--output",
                             dir.file("tcp"), "--bind", "127.0.0.1", "--join_timeout", "60"}),
                 dir.file("server.out"), dir.file("server.err"));
  int port = 0;
  for (int i = 0; i < 600 && port == 0 && server.running(); ++i) {
    const std::string s = read_file(dir.file("port"));
    if (!s.empty() && s.back() == '\n') port = std::stoi(s);
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(port, 0) << server.out() << server.err();
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<Process>(
        PSGD_CLIENT, std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port)},
        dir.file("c" + std::to_string(i) + ".out"), dir.file("c" + std::to_string(i) + ".err")));
  }
  auto code = server.wait(120s);
  ASSERT_TRUE(code.has_value()) << server.out() << server.err();
  ASSERT_EQ(*code, 0) << server.out() << server.err();

  auto r = testing::run(PSGD_INIT_SERVER,
                        with(kJob, {"--simulate", "--output", dir.file("sim"), "--sim_compute",
                                    "measured", "--stragglers", "1:x3"}),
                        dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string tcp = read_file(dir.file("tcp") + "/state_dict.pt");
  ASSERT_GT(tcp.size(), 1000u);
  EXPECT_TRUE(tcp == read_file(dir.file("sim") + "/state_dict.pt")) << "models differ";
  const std::string mt = read_file(dir.file("tcp") + "/metrics.csv");
  const std::string ms = read_file(dir.file("sim") + "/metrics.csv");
  for (int col : {4, 5, 6, 7, 8, 9}) {  // train_loss .. samples, bytes included
    EXPECT_EQ(column(mt, col), column(ms, col)) << "column " << col << "\n" << mt << ms;
  }
}

}  // namespace
}  // namespace psgd

namespace psgd {
namespace {

// The ring allreduce's peer messages go through the simulated network: it learns, in virtual time.
TEST(Simulate, AllreduceRingLearns) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  auto r = testing::run(PSGD_INIT_SERVER,
                        with(kJob, {"--simulate", "--psgd", "allreduce", "--output",
                                    dir.file("sim"), "--sim_compute", "fixed:5ms"}),
                        dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto summary = nlohmann::json::parse(read_file(dir.file("sim") + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["iterations"], 2 * 47);
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << "chance is 0.1";
  EXPECT_GT(summary["virtual_seconds"].get<double>(), 0.0);
}

// --allreduce_on_loss shrink honoured by the simulator: a worker that --fail kills mid-epoch
// leaves a ring of the others, which completes; the events say so, as a real run's. Without the
// option the same failure ends the run.
TEST(Simulate, AllreduceRingShrinksAfterASimulatedFailure) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  const auto flags = [&](const std::string& on_loss, const std::string& out) {
    return with(kJob,
                {"--simulate", "--psgd", "allreduce", "--output", dir.file(out), "--sim_compute",
                 "fixed:5ms", "--fail", "1@0.2", "--allreduce_on_loss", on_loss});
  };
  auto r = testing::run(PSGD_INIT_SERVER, flags("shrink", "shrink"), dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto summary = nlohmann::json::parse(read_file(dir.file("shrink") + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["iterations"], 2 * 47);
  // As in a real run: the loss (carried on), then the re-formed ring.
  ASSERT_EQ(summary["events"].size(), 2u) << summary.dump(1);
  const auto& loss = summary["events"][0];
  EXPECT_EQ(loss["event"], "worker_lost");
  EXPECT_EQ(loss["worker"], 1);
  EXPECT_EQ(loss["carried_on"], true);
  EXPECT_DOUBLE_EQ(loss["virtual_s"].get<double>(), 0.2);
  EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({1}));
  EXPECT_EQ(summary["worker_files"][1]["complete"], false) << summary["worker_files"].dump();
  EXPECT_EQ(summary["worker_files"][0]["complete"], true) << summary["worker_files"].dump();
  const auto& e = summary["events"][1];
  EXPECT_EQ(e["event"], "ring_reformed");
  EXPECT_EQ(e["lost"], nlohmann::json::array({1}));
  EXPECT_EQ(e["ring_size"], summary["nodes"].get<int>() - 1);
  EXPECT_GT(e["iteration"].get<int>(), 0);
  EXPECT_LT(e["iteration"].get<int>(), 47);
  EXPECT_EQ(e["epoch"], 1) << "lost in the first epoch";
  EXPECT_GT(e["virtual_s"].get<double>(), 0.19);
  EXPECT_EQ(e["untrained_blocks"], nlohmann::json::array({1}));
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << "chance is 0.1";

  // --redundancy 2 on 2 workers: the survivor holds every block, so no data is lost.
  r = testing::run(PSGD_INIT_SERVER, with(flags("shrink", "r2"), {"--redundancy", "2"}), dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  summary = nlohmann::json::parse(read_file(dir.file("r2") + "/summary.json"));
  ASSERT_EQ(summary["events"].size(), 2u) << summary.dump(1);
  EXPECT_EQ(summary["events"][1]["untrained_blocks"], nlohmann::json::array());
  EXPECT_EQ(summary["events"][1]["untrained_samples"], 0);

  r = testing::run(PSGD_INIT_SERVER, flags("fail", "fail"), dir, 120);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  summary = nlohmann::json::parse(read_file(dir.file("fail") + "/summary.json"));
  EXPECT_NE(summary["status"].get<std::string>().find("worker 1 failed at 0.2 s"),
            std::string::npos)
      << summary["status"];
  ASSERT_EQ(summary["events"].size(), 1u) << summary.dump(1);
  EXPECT_EQ(summary["events"][0]["event"], "worker_lost");
  EXPECT_EQ(summary["events"][0]["carried_on"], false);
  EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({1}));
}

// asgd with delay compensation (DC-ASGD-a, the paper's lambda) through the whole stack: flags,
// JobSpec, the server's compensation with worker momentum; it learns and reports its staleness.
TEST(Simulate, AsgdWithDelayCompensationLearns) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  auto r = testing::run(PSGD_INIT_SERVER,
                        with(kJob, {"--simulate", "--psgd", "asgd", "--delay_compensation", "2",
                                    "--output", dir.file("sim"), "--sim_compute", "fixed:5ms"}),
                        dir, 120);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto summary = nlohmann::json::parse(read_file(dir.file("sim") + "/summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << "chance is 0.1";
  EXPECT_GT(summary["staleness_mean"].get<double>(), 0.5) << "the gradients were stale";
  auto config = nlohmann::json::parse(read_file(dir.file("sim") + "/config.json"));
  EXPECT_EQ(config["job"]["delay_compensation"], 2.0);
  EXPECT_EQ(config["job"]["delay_compensation_mode"], "adaptive");
}

}  // namespace
}  // namespace psgd
