// A researcher's own TorchScript model (--model script:FILE) through the real binaries: a file
// that cannot be trained on the data is refused before training with one line and exit 2, by
// init_server and by init_server --simulate alike; a run records the file's content hash, its
// model.pt is the trained TorchScript module, and `evaluate` reads it without the original file;
// --resume refuses a checkpoint when the file behind the same flags has changed; asgd, ssp,
// local_sgd and broadcast train such a model with client processes; --save_every_epoch's files
// are modules evaluate and Python read.
// The models are written at test time by tests/python/make_models.py (tests/script_models.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/blobs.h"
#include "tests/integration/cluster.h"
#include "tests/integration/process.h"
#include "tests/script_models.h"

namespace psgd {
namespace {

using testing::count_lines;
using testing::read_file;
using testing::run;
using testing::TempDir;

// A job on the blobs of tests/integration/blobs.h (3 features, 2 classes) with `model_file`; the
// caller adds where it runs.
std::vector<std::string> blobs_job(const TempDir& dir, const std::string& model_file) {
  std::ofstream(dir.file("train.csv")) << testing::blobs_csv(400, 1);
  std::ofstream(dir.file("test.csv")) << testing::blobs_csv(100, 2);
  return {"--model",        "script:" + model_file,
          "--dataset",      "csv:train=" + dir.file("train.csv") + ",test=" + dir.file("test.csv"),
          "--label_column", "label",
          "--epochs",       "2",
          "--batch_size",   "32",
          "--threads",      "1",
          "--learn_rate",   "0.1"};
}

struct BadModel {
  std::string name;
  std::string file;      // in the models' directory
  std::string expected;  // a fragment of the error line
};
void PrintTo(const BadModel& c, std::ostream* os) {
  *os << c.name;
}

class BadScriptModel : public ::testing::TestWithParam<std::tuple<BadModel, bool>> {};

TEST_P(BadScriptModel, RefusedBeforeTrainingInOneLine) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  const auto& [c, simulate] = GetParam();
  TempDir dir;
  auto args = blobs_job(dir, models + "/" + c.file);
  args.insert(args.end(), {"--output", dir.file("run"), "--node_count", "2", "--working_ports", "0",
                           "--join_timeout", "20"});
  if (simulate) args.push_back("--simulate");
  // No client is ever started: the refusal must come before the server waits for workers.
  const auto r = run(PSGD_INIT_SERVER, args, dir, 60);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--model script:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/summary.json")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadScriptModel,
    ::testing::Combine(
        ::testing::Values(BadModel{"Missing", "no_such_model.pt", "cannot read"},
                          BadModel{"NotTorchScript", "state_dict.pt", "not a TorchScript module"},
                          BadModel{"NoParameters", "no_parameters.pt",
                                   "has no trainable parameters"},
                          BadModel{"InputDoesNotFit", "wrong_input.pt",
                                   "a forward pass on a batch of 2 x 1 x 1 x 3"},
                          BadModel{"OutputDoesNotFit", "wrong_output.pt", "the data has 2 classes"},
                          BadModel{"TupleOutput", "tuple_output.pt", "not one tensor"}),
        ::testing::Bool()),
    [](const auto& info) {
      return std::get<0>(info.param).name + (std::get<1>(info.param) ? "Simulated" : "Tcp");
    });

// A model that passes the start's check (a batch of 2) but fails on the evaluation's batch: the
// run ends "failed: --model script:...: the evaluation's forward pass on a batch of 100 failed:
// ..." in one line (not torch's traceback), exit 1, with summary.json written, over TCP (the
// workers are told) and under --simulate alike.
TEST(ScriptModelRun, AModelThatFailsOnALaterBatchEndsTheRunInOneLine) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  for (const bool simulate : {true, false}) {
    SCOPED_TRACE(simulate ? "--simulate" : "tcp");
    testing::Cluster cluster;
    auto args = blobs_job(cluster.dir, models + "/fixed_batch.pt");
    std::string err;
    int code = -1;
    if (simulate) {
      args.insert(args.end(),
                  {"--simulate", "--node_count", "2", "--output", cluster.dir.file("run")});
      const auto r = run(PSGD_INIT_SERVER, args, cluster.dir, 60);
      code = r.code;
      err = r.err;
    } else {
      ASSERT_NO_FATAL_FAILURE(cluster.start(2, args));
      const auto done = cluster.server->wait(std::chrono::seconds(60));
      ASSERT_TRUE(done.has_value()) << "server hung\n" << cluster.logs();
      code = *done;
      err = cluster.server->err();
      for (auto& c : cluster.clients)
        EXPECT_EQ(c->wait(std::chrono::seconds(30)).value_or(-1), 1) << cluster.logs();
    }
    EXPECT_EQ(code, 1) << err;
    const auto summary = testing::summary_in(cluster.dir.file("run"));
    const std::string status = summary["status"];
    EXPECT_EQ(status.rfind("failed: --model script:", 0), 0u) << status;
    EXPECT_NE(status.find("the evaluation's forward pass on a batch of 100 failed"),
              std::string::npos)
        << status;
    EXPECT_EQ(status.find('\n'), std::string::npos) << status;
    EXPECT_EQ(err.find("Traceback"), std::string::npos) << err;
  }
}

TEST(ScriptModelRun, RecordsTheFileHashAndEvaluateReadsTheTrainedModule) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  TempDir dir;
  // A copy the test may delete: the run must not need it afterwards.
  const std::string model = dir.file("my_model.pt");
  std::filesystem::copy_file(models + "/blobs_bn.pt", model);
  auto args = blobs_job(dir, model);
  args.insert(args.end(), {"--output", dir.file("run"), "--node_count", "2", "--working_ports", "0",
                           "--simulate"});
  const auto r = run(PSGD_INIT_SERVER, args, dir, 240);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto config = nlohmann::json::parse(read_file(dir.file("run/config.json")));
  EXPECT_EQ(config["model"]["file"], model);
  const std::string sha = config["model"]["sha256"];
  EXPECT_EQ(sha.size(), 64u);
  const auto hash = run("/usr/bin/sha256sum", {model}, dir, 30);
  EXPECT_EQ(hash.out.substr(0, 64), sha);
  const auto summary = nlohmann::json::parse(read_file(dir.file("run/summary.json")));
  EXPECT_EQ(summary["status"], "completed");
  const double accuracy = summary["final_test_accuracy"];
  EXPECT_GT(accuracy, 0.9) << "two well separated blobs";

  std::filesystem::remove(model);
  const auto e = run(PSGD_EVALUATE, {dir.file("run"), "--json"}, dir, 120);
  ASSERT_EQ(e.code, 0) << e.err;
  const auto eval = nlohmann::json::parse(e.out);
  EXPECT_NEAR(eval["test_accuracy"].get<double>(), accuracy, 1e-9) << e.out;
}

// The README's network (a CNN with BatchNorm and Dropout defined in Python, make_models.py's
// fashion_cnn.pt) learns Fashion-MNIST with 4 workers under ssgd and allreduce (a subset, in the
// simulator, so that the test stays short; the README gives full runs).
class FashionCnn : public ::testing::TestWithParam<const char*> {};

TEST_P(FashionCnn, LearnsWithFourWorkers) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  TempDir dir;
  const auto r = run(PSGD_INIT_SERVER, {"--model",         "script:" + models + "/fashion_cnn.pt",
                                        "--psgd",          GetParam(),
                                        "--node_count",    "4",
                                        "--epochs",        "1",
                                        "--batch_size",    "32",
                                        "--train_samples", "4000",
                                        "--test_samples",  "1000",
                                        "--learn_rate",    "0.05",
                                        "--threads",       "1",
                                        "--working_ports", "0",
                                        "--output",        dir.file("run"),
                                        "--simulate"},
                     dir, 240);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = nlohmann::json::parse(read_file(dir.file("run/summary.json")));
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << summary.dump(1);
}

INSTANTIATE_TEST_SUITE_P(Strategies, FashionCnn, ::testing::Values("ssgd", "allreduce"));

// The strategies FashionCnn and drivers_test do not cover train a TorchScript model with
// BatchNorm end to end: init_server and 4 client processes over loopback, 2 epochs on the blobs.
class ScriptModelStrategy : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(ScriptModelStrategy, LearnsWithFourClientProcesses) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  ::setenv("PSGD_PASSPHRASE", "script model strategies", 1);  // no other test's client can join
  testing::Cluster cluster;
  auto args = blobs_job(cluster.dir, models + "/blobs_bn.pt");
  // The case's own --learn_rate (Adam's) replaces the job's.
  if (std::find(GetParam().begin(), GetParam().end(), "--learn_rate") != GetParam().end()) {
    const auto at = std::find(args.begin(), args.end(), "--learn_rate");
    args.erase(at, at + 2);
  }
  args.insert(args.end(), GetParam().begin(), GetParam().end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(4, args));
  const auto code = cluster.server->wait(std::chrono::seconds(240));
  ::unsetenv("PSGD_PASSPHRASE");
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  const auto summary = testing::summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.9) << "two well separated blobs\n"
                                                               << summary.dump(1);
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, ScriptModelStrategy,
    ::testing::Values(std::vector<std::string>{"--psgd", "asgd"},
                      std::vector<std::string>{"--psgd", "ssp", "--staleness", "2"},
                      std::vector<std::string>{"--psgd", "local_sgd", "--sync_period", "2"},
                      std::vector<std::string>{"--psgd", "broadcast"},
                      std::vector<std::string>{"--psgd", "asgd", "--optimizer", "adam",
                                               "--learn_rate", "0.01"}),
    [](const auto& info) {
      std::string name = info.param[1];
      if (info.param.size() > 2 && info.param[2] == "--optimizer") name += "_adam";
      return name;
    });

// --save_every_epoch with a TorchScript model: model_best.pt is the TorchScript module like
// model.pt; `evaluate --model_file` reads it and finds the loss summary.json's best_model names,
// and Python loads both files (torch.jit.load, torch.load).
TEST(ScriptModelRun, SaveEveryEpochWritesModulesEvaluateAndPythonRead) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  TempDir dir;
  auto args = blobs_job(dir, models + "/blobs_bn.pt");
  args.insert(args.end(), {"--output", dir.file("run"), "--node_count", "2", "--working_ports", "0",
                           "--save_every_epoch", "--simulate"});
  const auto r = run(PSGD_INIT_SERVER, args, dir, 240);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto summary = nlohmann::json::parse(read_file(dir.file("run/summary.json")));
  const auto& best = summary["best_model"];
  EXPECT_EQ(best["monitor"], "test_loss") << "no validation split";
  const int epoch = best["epoch"];
  EXPECT_GE(epoch, 1);
  EXPECT_LE(epoch, 2);
  const auto e =
      run(PSGD_EVALUATE, {dir.file("run"), "--model_file", "model_best.pt", "--json"}, dir, 120);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NEAR(nlohmann::json::parse(e.out)["test_loss"].get<double>(), best["loss"].get<double>(),
              1e-6 * best["loss"].get<double>())
      << e.out;
  const auto last =
      run(PSGD_EVALUATE, {dir.file("run"), "--model_file", "model_epoch_2.pt", "--json"}, dir, 120);
  ASSERT_EQ(last.code, 0) << last.err;
  EXPECT_NEAR(nlohmann::json::parse(last.out)["test_loss"].get<double>(),
              summary["final_test_loss"].get<double>(), 1e-9)
      << "the last epoch's file is the final model";
  const auto bad = run(PSGD_EVALUATE, {dir.file("run"), "--model_file", "../x.pt"}, dir, 60);
  EXPECT_EQ(bad.code, 2) << bad.err;
  const auto py = run("/usr/bin/python3",
                      {"-c",
                       "import sys, torch\n"
                       "m = torch.jit.load(sys.argv[1] + '/model_best.pt')\n"
                       "d = torch.load(sys.argv[1] + '/state_dict_best.pt')\n"
                       "names = set(dict(m.named_parameters())) | set(dict(m.named_buffers()))\n"
                       "assert names == set(d), (names, set(d))\n"
                       "print(len(d))\n",
                       dir.file("run")},
                      dir, 120);
  EXPECT_EQ(py.code, 0) << py.out << py.err;
}

TEST(ScriptModelRun, ResumeRefusesACheckpointOfAnotherModelFile) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  ::setenv("PSGD_PASSPHRASE", "script model test", 1);  // no other test's client can join
  testing::Cluster cluster;
  const std::string model = cluster.dir.file("my_model.pt");
  std::filesystem::copy_file(models + "/blobs_bn.pt", model);
  auto args = blobs_job(cluster.dir, model);
  args.insert(args.end(),
              {"--psgd", "ssgd", "--checkpoint_every", "4", "--crash_after_checkpoints", "1"});
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, args));
  const auto code = cluster.server->wait(std::chrono::seconds(120));
  ::unsetenv("PSGD_PASSPHRASE");
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 128 + SIGKILL) << cluster.logs();
  const std::string run_dir = cluster.dir.file("run");
  ASSERT_TRUE(std::filesystem::exists(run_dir + "/checkpoint.bin")) << cluster.logs();
  for (auto& c : cluster.clients)
    c->kill();

  // The same architecture with other initial weights: the same flags, another job.
  std::filesystem::copy_file(models + "/blobs_traced.pt", model,
                             std::filesystem::copy_options::overwrite_existing);
  const auto r =
      run(PSGD_INIT_SERVER, {"--resume", run_dir, "--working_ports", "0"}, cluster.dir, 60);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("checkpoint is of another job configuration"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

}  // namespace
}  // namespace psgd
