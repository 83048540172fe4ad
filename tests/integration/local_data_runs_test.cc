// --local_data end to end, beyond local_data_test.cc, with real processes and clients started by
// hand: a worker whose own file is a CSV (flat rows of 784 features) trains beside an IDX worker
// under a server on Fashion-MNIST's IDX files (1x28x28), its rows taken as the model's shape; a
// CSV of another feature count is refused naming the worker, its host, its file and both shapes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <vector>

#include "tests/integration/cluster.h"
#include "tests/integration/local_data_run.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::fashion_mnist;
using testing::have_fashion_mnist;
using testing::LocalRun;
using testing::make_worker_csv;
using testing::make_worker_dir;
using testing::WorkerFile;

TEST(LocalData, ACsvWorkerBesideAnImageServerLearnsAndIsRecorded) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 3000);
  const WorkerFile w1 = make_worker_csv(r.dir, "w1", fm, 5, 9, 2000);
  // The CNN convolves 1x28x28 images: the CSV worker's flat rows would not fit its first layer
  // (nor give its parameter count) unless they take the model's shape.
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, w1.spec}, {"--model", "cnn", "--learn_rate", "0.05"}));
  ASSERT_EQ(r.wait_server(), 0) << r.logs();
  for (auto& c : r.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << r.logs();
  const auto summary = testing::summary_in(r.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.5) << r.logs();
  ASSERT_EQ(summary["local_data"].size(), 2u) << summary;
  for (std::size_t w = 0; w < 2; ++w) {
    const auto& e = summary["local_data"][w];
    const WorkerFile& f = e["dataset"] == w0.spec ? w0 : w1;
    EXPECT_EQ(e["dataset"], f.spec) << e;
    EXPECT_EQ(e["samples"], f.spec == w0.spec ? 3000 : 2000) << e;
    auto histogram = e["label_histogram"].get<std::vector<std::int64_t>>();
    histogram.resize(10, 0);
    EXPECT_EQ(histogram, f.histogram) << e;
    EXPECT_EQ(e["test_rows"], 0);
  }
  EXPECT_EQ(summary["iterations"], 158) << summary;
  // The server and the CSV worker say that its rows were reshaped.
  EXPECT_NE(r.server->out().find("trains on its own " + w1.spec +
                                 ": 2,000 samples, classes 5-9, none of the server's test rows "
                                 "(its rows of 1x1x784 (784 features) taken as the model's "
                                 "1x28x28 (784 features))"),
            std::string::npos)
      << r.logs();
  EXPECT_NE(r.server->out().find("trains on its own " + w0.spec +
                                 ": 3,000 samples, classes 0-4, none of the server's test rows\n"),
            std::string::npos)
      << r.logs();
  EXPECT_NE(r.clients[1]->out().find("its rows of 1x1x784 (784 features) are taken as the "
                                     "model's 1x28x28 (784 features)"),
            std::string::npos)
      << r.logs();
}

TEST(LocalData, ACsvOfAnotherFeatureCountIsRefusedNamingBothShapes) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 300);
  // An export that lost its last pixel column: 783 features.
  const WorkerFile w1 = make_worker_csv(r.dir, "w1", fm, 5, 9, 200, 783);
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, w1.spec}));
  EXPECT_EQ(r.wait_server(), 1) << r.logs();
  for (auto& c : r.clients)
    EXPECT_TRUE(c->wait(30s).has_value()) << r.logs();
  const std::string line = "its own file " + w1.spec +
                           " holds samples of 1x1x783 (783 features), but the job's model takes "
                           "1x28x28 (784 features) (the server's --dataset); give every worker a "
                           "file with as many features per sample";
  // One line: "... worker W (HOST): " then the reason, naming the file and both shapes.
  const std::string err = r.server->err();
  const auto at = err.find(line);
  ASSERT_NE(at, std::string::npos) << r.logs();
  const auto newline = err.rfind('\n', at);
  const std::size_t from = newline == std::string::npos ? 0 : newline + 1;
  const std::string before = err.substr(from, at - from);
  EXPECT_TRUE(std::regex_search(before, std::regex("worker [01] \\([^)]+\\): $"))) << before;
  EXPECT_NE(testing::summary_in(r.dir.file("run"))["status"].get<std::string>().find(line),
            std::string::npos);
}

}  // namespace
}  // namespace psgd
