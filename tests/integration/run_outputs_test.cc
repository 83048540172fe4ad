// One short real run with --timeline and --tensorboard, then its outputs: the Chrome trace, the
// TensorBoard event files, `evaluate` on the saved model, and the state dict in Python PyTorch.
// The run normalises its inputs (--normalize zscore), so both evaluations must apply the run's
// normaliser to reach the run's own accuracy.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "tests/experiments/event_reader.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::Process;
using testing::read_file;
using testing::TempDir;

constexpr int kWorkers = 3;

class RunOutputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
      return;
    }
    dir_ = new TempDir();
    Process server(PSGD_INIT_SERVER, {"--node_count",    std::to_string(kWorkers),
                                      "--working_ports", "0",
                                      "--port_file",     dir_->file("port"),
                                      "--output",        dir_->file("run"),
                                      "--bind",          "127.0.0.1",
                                      "--join_timeout",  "60",
                                      "--io_timeout",    "30",
                                      "--train_samples", "3000",
                                      "--test_samples",  "1000",
                                      "--epochs",        "2",
                                      "--batch_size",    "32",
                                      "--seed",          "5",
                                      "--normalize",     "zscore",
                                      "--timeline",      "--tensorboard"},
                   dir_->file("server.out"), dir_->file("server.err"));
    int port = 0;
    for (int i = 0; i < 600 && port == 0; ++i) {
      const std::string s = read_file(dir_->file("port"));
      if (!s.empty() && s.back() == '\n') port = std::stoi(s);
      if (!server.running()) break;
      std::this_thread::sleep_for(50ms);
    }
    if (port == 0) return;
    std::vector<std::unique_ptr<Process>> clients;
    for (int w = 0; w < kWorkers; ++w) {
      clients.push_back(std::make_unique<Process>(
          PSGD_CLIENT,
          std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port),
                                   "--connect_timeout", "10"},
          dir_->file("client" + std::to_string(w) + ".out"),
          dir_->file("client" + std::to_string(w) + ".err")));
    }
    const auto code = server.wait(120s);
    for (auto& c : clients)
      c->wait(30s);
    ok_ = code && *code == 0;
    log_ = server.out() + server.err();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    ASSERT_TRUE(ok_) << log_;
  }
  static std::string run() { return dir_->file("run"); }

 public:
  static std::string run_dir() { return dir_->file("run"); }

  static TempDir* dir_;
  static bool ok_;
  static std::string log_;
};
TempDir* RunOutputs::dir_ = nullptr;
bool RunOutputs::ok_ = false;
std::string RunOutputs::log_;

void check_TimelineIsAChromeTraceWithOneTrackPerWorker() {
  const auto trace = nlohmann::json::parse(read_file(RunOutputs::run_dir() + "/timeline.json"));
  std::map<int, std::string> names;
  std::map<int, std::set<std::string>> phases;
  for (const auto& e : trace.at("traceEvents")) {
    const int pid = e.at("pid");
    if (e.at("ph") == "M" && e.at("name") == "process_name") {
      names[pid] = e.at("args").at("name");
    } else if (e.at("ph") == "X") {
      phases[pid].insert(e.at("name").get<std::string>());
      EXPECT_GE(e.at("dur").get<double>(), 0);
    }
  }
  ASSERT_EQ(names.size(), kWorkers + 1u);
  EXPECT_EQ(names[0], "server");
  EXPECT_EQ(phases[0], (std::set<std::string>{"round", "apply"}));
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(names[w + 1].rfind("worker " + std::to_string(w), 0), 0u) << names[w + 1];
    EXPECT_EQ(phases[w + 1], (std::set<std::string>{"wait", "decode", "compute", "encode"}));
  }
}

void check_TensorBoardEventsHoldTheEpochScalars() {
  std::vector<std::string> files;
  for (const auto& f : std::filesystem::directory_iterator(RunOutputs::run_dir() + "/tensorboard"))
    files.push_back(f.path().string());
  ASSERT_EQ(files.size(), 1u);
  const auto events = testing::read_events(files[0]);
  ASSERT_EQ(events.size(), 4u);  // file version, epochs 0, 1, 2
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  const auto summary = nlohmann::json::parse(read_file(RunOutputs::run_dir() + "/summary.json"));
  const auto& last = events.back();
  EXPECT_EQ(last.step, 2);
  EXPECT_FLOAT_EQ(last.scalars.at("accuracy/test"),
                  static_cast<float>(summary["final_test_accuracy"].get<double>()));
  for (const char* tag : {"loss/test", "loss/train", "bytes/up", "bytes/down",
                          "time_split/compute_s", "time_split/wait_s", "time_split/encode_s"}) {
    EXPECT_TRUE(last.scalars.count(tag)) << tag;
  }
  EXPECT_GT(last.scalars.at("time_split/compute_s"), 0.0f);
}

void check_EvaluateGivesTheRunsFinalAccuracy() {
  TempDir tmp;
  const auto out = testing::run(PSGD_EVALUATE, {RunOutputs::run_dir(), "--json"}, tmp, 60);
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  const auto result = nlohmann::json::parse(out.out);
  const auto summary = nlohmann::json::parse(read_file(RunOutputs::run_dir() + "/summary.json"));
  EXPECT_EQ(result["test_samples"], 1000);
  EXPECT_DOUBLE_EQ(result["test_accuracy"].get<double>(),
                   summary["final_test_accuracy"].get<double>());
  EXPECT_NEAR(result["test_loss"].get<double>(), summary["final_test_loss"].get<double>(), 1e-9);
  // A completed run ends at an evaluation: model.pt is the model the summary's figures are of.
  EXPECT_EQ(summary["final_test_iteration"], summary["iterations"]);
  EXPECT_TRUE(result["note"].is_null()) << result.dump();
}

TEST(Evaluate, RefusesADirectoryWithoutAModel) {
  TempDir tmp;
  const auto out = testing::run(PSGD_EVALUATE, {tmp.file("nothing-here")}, tmp, 30);
  EXPECT_NE(out.code, 0);
  EXPECT_NE(out.err.find("config.json"), std::string::npos) << out.err;
}

void check_PythonPyTorchLoadsTheStateDictWithTheSameAccuracy() {
  TempDir tmp;
  const auto out =
      testing::run("/usr/bin/python3", {PSGD_CHECK_STATE_DICT, RunOutputs::run_dir()}, tmp, 120);
  if (out.code == 77) {
    std::cout << "skipped: " << out.out;
    return;
  }
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  const auto result = nlohmann::json::parse(out.out);
  const auto summary = nlohmann::json::parse(read_file(RunOutputs::run_dir() + "/summary.json"));
  EXPECT_EQ(result["test_samples"], 1000);
  EXPECT_DOUBLE_EQ(result["test_accuracy"].get<double>(),
                   summary["final_test_accuracy"].get<double>());
  EXPECT_NEAR(result["test_loss"].get<double>(), summary["final_test_loss"].get<double>(), 1e-4);
}

}  // namespace
}  // namespace psgd

namespace psgd {
namespace {

// One run serves every check: ctest starts each test in its own process, so separate tests would
// train once each.
TEST_F(RunOutputs, TimelineTensorBoardEvaluateAndPythonStateDict) {
  {
    SCOPED_TRACE("timeline.json");
    check_TimelineIsAChromeTraceWithOneTrackPerWorker();
  }
  {
    SCOPED_TRACE("tensorboard");
    check_TensorBoardEventsHoldTheEpochScalars();
  }
  {
    SCOPED_TRACE("evaluate");
    check_EvaluateGivesTheRunsFinalAccuracy();
  }
  {
    SCOPED_TRACE("state_dict.pt in Python");
    check_PythonPyTorchLoadsTheStateDictWithTheSameAccuracy();
  }
}

}  // namespace
}  // namespace psgd
