// --local_data end to end, beyond local_data_test.cc, with real processes and
// clients started by hand: a worker whose own file is a CSV (flat rows of 784
// features) trains beside an IDX worker under a server on Fashion-MNIST's IDX
// files (1x28x28), its rows taken as the model's shape; a CSV of another
// feature count is refused naming the worker, its address, its file and both
// shapes. And an allreduce ring that shrinks after losing a worker
// (--allreduce_on_loss shrink) reports the lost worker's own samples as no
// longer trained on.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <regex>
#include <string>
#include <thread>
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
using testing::read_file;
using testing::WorkerFile;

TEST(LocalData, ACsvWorkerBesideAnImageServerLearnsAndIsRecorded) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 3000);
  const WorkerFile w1 = make_worker_csv(r.dir, "w1", fm, 5, 9, 2000);
  // The CNN convolves 1x28x28 images: the CSV worker's flat rows would not fit
  // its first layer (nor give its parameter count) unless they take the model's
  // shape.
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
  // One line: "... worker W (ADDRESS, host HOST): " then the reason, naming the
  // file and both shapes. The address is the one the server saw the worker
  // connect from (here loopback): host names alone do not tell workers apart
  // in network namespaces, where every worker has the same one.
  const std::string err = r.server->err();
  const auto at = err.find(line);
  ASSERT_NE(at, std::string::npos) << r.logs();
  const auto newline = err.rfind('\n', at);
  const std::size_t from = newline == std::string::npos ? 0 : newline + 1;
  const std::string before = err.substr(from, at - from);
  EXPECT_TRUE(
      std::regex_search(before, std::regex("worker [01] \\(127\\.0\\.0\\.1, host [^)]+\\): $")))
      << before;
  EXPECT_NE(testing::summary_in(r.dir.file("run"))["status"].get<std::string>().find(line),
            std::string::npos);
}

// An allreduce ring that goes on without a lost worker (--allreduce_on_loss
// shrink) reports what no one trains on any more: under --local_data the lost
// worker's own file (there are no blocks).
TEST(LocalData, AShrunkRingReportsTheLostWorkersOwnSamplesAsUntrained) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile a = make_worker_dir(r.dir, "a", fm, 0, 3, 1000);
  const WorkerFile b = make_worker_dir(r.dir, "b", fm, 4, 6, 800);
  const WorkerFile c = make_worker_dir(r.dir, "c", fm, 7, 9, 600);
  // 4 epochs of 25 iterations, each at least 0.1 s: time enough to lose a
  // worker mid-run.
  ASSERT_NO_FATAL_FAILURE(
      r.start({a.spec, b.spec, c.spec},
              {"--psgd", "allreduce", "--allreduce_on_loss", "shrink", "--epochs", "4", "--delay",
               "fixed:0.1", "--dead_after", "10", "--heartbeat_interval", "1"}));
  for (auto& client : r.clients)
    ASSERT_TRUE(testing::wait_for_output(*client, "linked with its", 120s)) << r.logs();
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(r.server->running()) << r.logs();
  const int victim_pid = r.clients[1]->pid();
  r.clients[1]->signal(SIGKILL);
  ASSERT_EQ(r.wait_server(), 0) << r.logs();
  const auto summary = testing::summary_in(r.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed") << r.logs();
  const auto config = nlohmann::json::parse(read_file(r.dir.file("run") + "/config.json"));
  int victim = -1;
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == victim_pid) victim = w["worker"].get<int>();
  ASSERT_GE(victim, 0) << config["workers"];
  const auto& entry = summary["local_data"][static_cast<std::size_t>(victim)];
  EXPECT_EQ(entry["dataset"], b.spec) << entry;
  ASSERT_EQ(summary["events"].size(), 2u) << summary["events"].dump(1);
  const auto& ring = summary["events"][1];
  EXPECT_EQ(ring["event"], "ring_reformed");
  EXPECT_EQ(ring["lost"], nlohmann::json::array({victim}));
  EXPECT_EQ(ring["ring_size"], 2);
  EXPECT_EQ(ring["untrained_samples"], 800) << ring.dump();
  EXPECT_FALSE(ring.contains("untrained_blocks")) << ring.dump();
  EXPECT_NE(ring["effect"].get<std::string>().find(
                "800 training samples (the lost workers' own files) are no "
                "longer trained on"),
            std::string::npos)
      << ring.dump();
  for (std::size_t k : {0u, 2u})
    EXPECT_EQ(r.clients[k]->wait(60s).value_or(-1), 0) << r.logs();
}

}  // namespace
}  // namespace psgd
