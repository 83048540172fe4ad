// --local_data end to end, with real processes: two clients started by hand, each given its own
// label-skewed IDX directory cut from Fashion-MNIST's training split (worker 0 classes 0-4,
// worker 1 classes 5-9, different sizes). The run learns on the server's own test set and
// records each worker's size and histogram; a worker holding test rows, a file of another shape
// and a file that cannot be read are refused naming the worker and the file, and the server
// ends (no hang); flags local data cannot honour are refused by init_server --check.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "nn/data_source.h"
#include "tests/integration/blobs.h"
#include "tests/integration/cluster.h"
#include "tests/integration/local_data_run.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::fashion_mnist;
using testing::have_fashion_mnist;
using testing::LocalRun;
using testing::make_worker_dir;
using testing::Process;
using testing::read_file;
using testing::TempDir;
using testing::wait_for_port;
using testing::WorkerFile;

TEST(LocalData, TwoWorkersWithTheirOwnLabelSkewedFilesLearnAndAreRecorded) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 3000);
  const WorkerFile w1 = make_worker_dir(r.dir, "w1", fm, 5, 9, 2000);
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, w1.spec}, {"--learn_rate", "0.05"}));
  ASSERT_EQ(r.wait_server(), 0) << r.logs();
  for (auto& c : r.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << r.logs();
  const auto summary = testing::summary_in(r.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed");
  // Above chance (10 classes) on the server's own test set, which no worker holds.
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.5) << r.logs();
  ASSERT_EQ(summary["local_data"].size(), 2u) << summary;
  // Worker ids go by join order: each entry is matched to its file by name.
  for (std::size_t w = 0; w < 2; ++w) {
    const auto& e = summary["local_data"][w];
    EXPECT_EQ(e["worker"], w);
    const WorkerFile& f = e["dataset"] == w0.spec ? w0 : w1;
    EXPECT_EQ(e["dataset"], f.spec) << e;
    EXPECT_EQ(e["samples"], f.spec == w0.spec ? 3000 : 2000) << e;
    auto histogram = e["label_histogram"].get<std::vector<std::int64_t>>();
    histogram.resize(10, 0);  // up to the file's own largest label
    EXPECT_EQ(histogram, f.histogram) << e;
    EXPECT_EQ(e["test_rows"], 0);
  }
  // The schedule is fixed over the workers' sizes: ceil(5000 / (2 x 32)) = 79 per epoch.
  const auto config = nlohmann::json::parse(read_file(r.dir.file("run") + "/config.json"));
  EXPECT_EQ(config["schedule"]["iterations_per_epoch"], 79) << config["schedule"];
  EXPECT_EQ(config["data"]["train_samples"], 5000);
  for (std::size_t w = 0; w < 2; ++w) {
    EXPECT_EQ(config["workers"][w]["samples"], summary["local_data"][w]["samples"]);
    EXPECT_EQ(config["workers"][w]["label_histogram"], summary["local_data"][w]["label_histogram"]);
  }
  EXPECT_EQ(summary["iterations"], 158) << summary;
  // One line per worker at join: id, host, samples, classes present.
  EXPECT_NE(r.server->out().find("trains on its own " + w0.spec + ": 3,000 samples, classes 0-4"),
            std::string::npos)
      << r.logs();
  EXPECT_NE(r.server->out().find("trains on its own " + w1.spec + ": 2,000 samples, classes 5-9"),
            std::string::npos)
      << r.logs();
}

TEST(LocalData, AWorkerWhoseFileHoldsTestRowsIsRefusedNamingItAndTheCount) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 300);
  const WorkerFile w1 = make_worker_dir(r.dir, "w1", fm, 5, 9, 200, /*leaked=*/37);
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, w1.spec}));
  EXPECT_EQ(r.wait_server(), 1) << r.logs();
  for (auto& c : r.clients)
    EXPECT_TRUE(c->wait(30s).has_value()) << r.logs();
  // Worker ids go by join order: the line names whichever id the leaking client got.
  EXPECT_TRUE(std::regex_search(r.server->err(),
                                std::regex("worker [01] \\([^)]+\\): its own file " + w1.spec +
                                           " holds 37 of the server's test rows")))
      << r.logs();
  const auto summary = testing::summary_in(r.dir.file("run"));
  EXPECT_NE(summary["status"].get<std::string>().find("37 of the server's test rows"),
            std::string::npos);
  const int leaker =
      summary["local_data"][0].is_object() && summary["local_data"][0]["dataset"] == w1.spec ? 0
                                                                                             : 1;
  EXPECT_EQ(summary["local_data"][static_cast<std::size_t>(leaker)]["test_rows"], 37) << summary;
}

TEST(LocalData, AClientWithoutAReadableFileFailsNamingItAndTheServerEnds) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fashion_mnist(), 0, 4, 300);
  const std::string missing = "idx:" + r.dir.file("no-such-dir");
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, missing}));
  EXPECT_EQ(r.wait_server(), 1) << r.logs();
  EXPECT_NE(r.clients[1]->wait(30s).value_or(0), 0) << r.logs();
  EXPECT_TRUE(r.clients[0]->wait(30s).has_value()) << r.logs();
  const std::string line = "cannot read this worker's own file " + missing;
  EXPECT_NE(r.clients[1]->err().find(line), std::string::npos) << r.logs();
  EXPECT_TRUE(std::regex_search(r.server->err(),
                                std::regex("worker [01] \\([^)]+\\) gave up: --local_data: cannot "
                                           "read this worker's own file " +
                                           missing)))
      << r.logs();
}

TEST(LocalData, AFileOfAnotherShapeIsRefusedNamingTheWorkerAndTheFile) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fashion_mnist(), 0, 4, 300);
  {
    std::ofstream out(r.dir.file("blobs.csv"));
    out << testing::blobs_csv(100, 1);
  }
  const std::string csv = "csv:" + r.dir.file("blobs.csv");
  ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, csv}, {"--label_column", "label"}));
  EXPECT_EQ(r.wait_server(), 1) << r.logs();
  for (auto& c : r.clients)
    EXPECT_TRUE(c->wait(30s).has_value()) << r.logs();
  EXPECT_TRUE(std::regex_search(r.server->err(),
                                std::regex("worker [01] \\([^)]+\\): its own file " + csv +
                                           " holds samples of 1x1x3 \\(3 features\\), but the "
                                           "job's model takes 1x28x28 \\(784 features\\)")))
      << r.logs();
}

// Every strategy the mode accepts trains on the workers' own files: an asgd iteration is one
// worker's batch (twice as many per epoch), local_sgd and allreduce workers count their steps.
TEST(LocalData, AsgdLocalSgdAndAllreduceLearnOnTheWorkersOwnFiles) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  TempDir files;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(files, "w0", fm, 0, 4, 3000);
  const WorkerFile w1 = make_worker_dir(files, "w1", fm, 5, 9, 2000);
  for (const std::string psgd : {"asgd", "local_sgd", "allreduce"}) {
    LocalRun r;
    ASSERT_NO_FATAL_FAILURE(r.start({w0.spec, w1.spec}, {"--psgd", psgd}));
    ASSERT_EQ(r.wait_server(), 0) << psgd << "\n" << r.logs();
    for (auto& c : r.clients)
      EXPECT_EQ(c->wait(30s).value_or(-1), 0) << r.logs();
    const auto summary = testing::summary_in(r.dir.file("run"));
    EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.5) << psgd << "\n" << r.logs();
    EXPECT_EQ(summary["iterations"], psgd == "asgd" ? 316 : 158) << psgd;
  }
}

// A client that takes over a lost worker's slot during training must bring that worker's file:
// one with another size and histogram is dropped naming both, one with the same file rejoins.
TEST(LocalData, ATakeOverNeedsTheLostWorkersFile) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed";
  LocalRun r;
  const auto& fm = fashion_mnist();
  const WorkerFile w0 = make_worker_dir(r.dir, "w0", fm, 0, 4, 3000);
  const WorkerFile w1 = make_worker_dir(r.dir, "w1", fm, 5, 9, 2000);
  // 10 epochs with a 20 ms pause per batch: at least 16 s, time enough to replace a worker.
  ASSERT_NO_FATAL_FAILURE(
      r.start({w0.spec, w1.spec},
              {"--psgd", "asgd", "--epochs", "10", "--delay", "fixed:0.02", "--dead_after", "3"}));
  ASSERT_TRUE(testing::wait_for_output(*r.server, "training for 10 epochs")) << r.logs();
  r.clients[1]->signal(SIGKILL);
  ASSERT_TRUE(testing::wait_for_output(*r.server, "lost worker")) << r.logs();
  const int port = std::stoi(read_file(r.dir.file("port")));
  auto replacement = [&](const std::string& dataset, const std::string& name) {
    return std::make_unique<Process>(
        PSGD_CLIENT,
        std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port),
                                 "--connect_timeout", "10", "--dataset", dataset},
        r.dir.file(name + ".out"), r.dir.file(name + ".err"));
  };
  // Client 1 was killed: its file is w1 or w0, whichever it was given (w1, by start()).
  auto wrong = replacement(w0.spec, "wrong");
  EXPECT_NE(wrong->wait(60s).value_or(0), 0) << r.logs();
  EXPECT_NE(
      (wrong->out() + wrong->err()).find("a client taking over a slot must bring the same file"),
      std::string::npos)
      << wrong->out() << wrong->err();
  auto right = replacement(w1.spec, "right");
  EXPECT_EQ(r.wait_server(), 0) << r.logs();
  EXPECT_EQ(right->wait(30s).value_or(-1), 0) << r.logs() << right->out() << right->err();
  EXPECT_NE(r.server->out().find("is back"), std::string::npos) << r.logs();
  EXPECT_EQ(testing::summary_in(r.dir.file("run"))["status"], "completed");
}

// What --local_data cannot honour is refused before anything starts, in one line, exit 2.
TEST(LocalData, SettingsItCannotHonourAreRefused) {
  TempDir tmp;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--redundancy", "2"}, "--local_data with --redundancy 2"},
      {{"--redundancy", "2", "--codec", "gc"}, "--local_data with --redundancy 2"},
      {{"--codec", "ccdc", "--psgd", "broadcast", "--redundancy", "1"},
       "--local_data with --codec ccdc"},
      {{"--ship_data", "auto"}, "--local_data with --ship_data auto"},
      {{"--ship_data"}, "--local_data with --ship_data always"},
      {{"--block_assignment", "contiguous"}, "--local_data with --block_assignment contiguous"},
      {{"--normalize", "zscore"}, "--local_data with --normalize zscore"},
      {{"--checkpoint_every", "10"}, "--local_data with --checkpoint_every"},
      {{"--simulate"}, "--local_data with --simulate"},
  };
  for (const auto& [flags, expected] : cases) {
    std::vector<std::string> args{"--check", "--local_data", "--node_count", "4"};
    args.insert(args.end(), flags.begin(), flags.end());
    Process p(PSGD_INIT_SERVER, args, tmp.file("out"), tmp.file("err"));
    EXPECT_EQ(p.wait(60s).value_or(-1), 2) << flags[0] << "\n" << p.out() << p.err();
    EXPECT_NE(p.err().find(expected), std::string::npos) << flags[0] << "\n" << p.err();
  }
  // --resume of a run directory whose config.json is a --local_data job.
  {
    std::filesystem::create_directories(tmp.file("run"));
    std::ofstream(tmp.file("run/config.json")) << R"({"job": {"local_data": true}})";
    Process p(PSGD_INIT_SERVER, {"--resume", tmp.file("run")}, tmp.file("out"), tmp.file("err"));
    EXPECT_EQ(p.wait(60s).value_or(-1), 2) << p.out() << p.err();
    EXPECT_NE(p.err().find("a --local_data run cannot be resumed yet"), std::string::npos)
        << p.err();
  }
  // Accepted: the flag alone, as JSON in a --config file too.
  {
    std::ofstream(tmp.file("job.json")) << R"({"local_data": true, "node_count": 2})";
    Process p(PSGD_INIT_SERVER, {"--check", "--config", tmp.file("job.json")}, tmp.file("out"),
              tmp.file("err"));
    EXPECT_EQ(p.wait(60s).value_or(-1), 0) << p.out() << p.err();
    EXPECT_NE(p.out().find("\"local_data\": true"), std::string::npos) << p.out();
  }
}

}  // namespace
}  // namespace psgd
