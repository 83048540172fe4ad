// Checkpoint and resume against real processes (issue 8): a server killed with SIGKILL after a
// checkpoint and restarted with --resume ends with the same parameters as a run that was never
// interrupted; a damaged checkpoint is refused in one line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::metrics_epochs;
using testing::Process;
using testing::read_file;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

// ssgd, 2 workers, 32 iterations per epoch, 3 epochs, momentum (the server's optimiser state
// matters), a checkpoint every 10 iterations and at every epoch end.
const std::vector<std::string> kJob{"--train_samples",
                                    "2000",
                                    "--test_samples",
                                    "300",
                                    "--epochs",
                                    "3",
                                    "--batch_size",
                                    "32",
                                    "--seed",
                                    "5",
                                    "--psgd",
                                    "ssgd",
                                    "--momentum",
                                    "0.9",
                                    "--checkpoint_every",
                                    "10"};

// Sets the passphrase for the processes started while it lives, so that a client redialling a
// freed port cannot join another test's server.
struct Passphrase {
  Passphrase() { ::setenv("PSGD_PASSPHRASE", "resume test", 1); }
  ~Passphrase() { ::unsetenv("PSGD_PASSPHRASE"); }
};

TEST(Resume, KilledServerResumedEndsWithTheParametersOfAnUninterruptedRun) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  // The uninterrupted run.
  // --save_every_epoch too: the model files of the epochs before the crash stay, and model_best.pt
  // is chosen over the epochs of both server lives as in the run that was never interrupted.
  std::vector<std::string> job = kJob;
  job.push_back("--save_every_epoch");
  Cluster whole;
  ASSERT_NO_FATAL_FAILURE(whole.start(2, job));
  auto code = whole.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << whole.logs();
  ASSERT_EQ(*code, 0) << whole.logs();
  const auto expected = summary_in(whole.dir.file("run"));
  ASSERT_EQ(expected["status"], "completed");
  EXPECT_GE(expected["checkpoints_written"].get<int>(), 9);  // 10, 20, 30, 32, 40, ... 90
  const std::string want = expected["parameters_sha256"];
  ASSERT_EQ(want.size(), 64u);

  // The same run, its server killed (SIGKILL, by itself) right after its 5th checkpoint: at
  // iteration 40, in the middle of epoch 2 (checkpoints at 10, 20, 30, 32 and 40).
  std::vector<std::string> crashing = job;
  crashing.insert(crashing.end(), {"--crash_after_checkpoints", "5"});
  Cluster broken;
  broken.client_connect_timeout = "60";  // they redial while the resumed server starts
  ASSERT_NO_FATAL_FAILURE(broken.start(2, crashing));
  code = broken.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << broken.logs();
  ASSERT_EQ(*code, 128 + SIGKILL) << broken.logs();
  const std::string run = broken.dir.file("run");
  EXPECT_FALSE(std::filesystem::exists(run + "/summary.json"));
  EXPECT_TRUE(std::filesystem::exists(run + "/checkpoint.bin"));
  EXPECT_EQ(metrics_epochs(run), (std::vector<int>{0, 1}));

  // Resume on the same port: the clients, still redialling, join it again.
  ASSERT_NO_FATAL_FAILURE(broken.resume_with_the_same_clients());
  const auto got = summary_in(run);
  EXPECT_EQ(got["status"], "completed");
  EXPECT_EQ(got["resumed"], true);
  EXPECT_EQ(got["iterations"], expected["iterations"]);
  EXPECT_EQ(got["epochs"], 3);
  EXPECT_EQ(got["samples"], expected["samples"]);
  // Bit-identical final parameters, hence the same test loss.
  EXPECT_EQ(got["parameters_sha256"], want)
      << read_file(broken.dir.file("resumed.out")) << broken.logs();
  EXPECT_EQ(got["final_test_loss"], expected["final_test_loss"]);
  bool recorded = false;
  for (const auto& e : got["events"]) {
    if (e["event"] == "resumed") {
      recorded = true;
      EXPECT_EQ(e["iteration"], 40);
      EXPECT_EQ(e["epoch"], 1);
    }
  }
  EXPECT_TRUE(recorded) << got.dump(1);
  // metrics.csv continues: every epoch once, in order.
  EXPECT_EQ(metrics_epochs(run), (std::vector<int>{0, 1, 2, 3}));
  // The model files: byte-identical to the uninterrupted run's, epoch by epoch and the best.
  EXPECT_EQ(got["best_model"], expected["best_model"]) << got["best_model"].dump();
  for (const std::string tag : {"epoch_1", "epoch_2", "epoch_3", "best"}) {
    const std::string file = "state_dict_" + tag + ".pt";
    ASSERT_TRUE(std::filesystem::exists(run + "/" + file)) << file;
    EXPECT_TRUE(read_file(run + "/" + file) == read_file(whole.dir.file("run") + "/" + file))
        << file << " differs from the uninterrupted run's";
  }
  EXPECT_NE(read_file(broken.dir.file("resumed.out")).find("resuming"), std::string::npos)
      << read_file(broken.dir.file("resumed.out"));
}

// A resumed server stopped (SIGTERM) before its workers rejoin: its summary keeps the
// checkpoint's iteration (it said 0), and the interrupted event's command to continue names what
// the redialling workers need: the same port, address and passphrase.
TEST(Resume, AResumedServerStoppedBeforeItsWorkersRejoinKeepsTheCheckpointsIteration) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  std::vector<std::string> crashing = kJob;
  crashing.insert(crashing.end(), {"--crash_after_checkpoints", "2"});
  Cluster broken;
  ASSERT_NO_FATAL_FAILURE(broken.start(2, crashing));
  ASSERT_EQ(broken.server->wait(120s).value_or(-1), 128 + SIGKILL) << broken.logs();
  for (auto& c : broken.clients)
    c->kill();  // nobody rejoins the resumed server
  const std::string run = broken.dir.file("run");
  const auto resumed = broken.start_resumed();
  const int port = testing::wait_for_port(broken.dir.file("port2"), *resumed);
  ASSERT_GT(port, 0) << resumed->err();
  resumed->signal(SIGTERM);
  ASSERT_EQ(resumed->wait(30s).value_or(-1), 128 + SIGTERM) << resumed->out() << resumed->err();
  const auto summary = summary_in(run);
  EXPECT_EQ(summary["status"], "interrupted");
  EXPECT_EQ(summary["iterations"], 20) << summary.dump(1);  // checkpoints at 10 and 20
  const auto& event = summary["events"].back();
  EXPECT_EQ(event["event"], "interrupted");
  EXPECT_EQ(event["iteration"], 20);
  const std::string next = event["checkpoint"];
  EXPECT_NE(next.find("init_server --resume " + run + " --working_ports " + std::to_string(port) +
                      " --bind 127.0.0.1 (with $PSGD_PASSPHRASE set"),
            std::string::npos)
      << next;
}

// Runs init_server --resume on `run` and returns {exit code, stderr}.
std::pair<int, std::string> try_resume(const std::string& run, const testing::TempDir& dir) {
  auto r = testing::run(PSGD_INIT_SERVER, {"--resume", run, "--working_ports", "0"}, dir, 60);
  return {r.code, r.err};
}

TEST(Resume, DamagedCheckpointsAndChangedJobsAreRefusedInOneLine) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  std::vector<std::string> crashing = kJob;
  crashing.insert(crashing.end(), {"--crash_after_checkpoints", "1"});
  Cluster broken;
  ASSERT_NO_FATAL_FAILURE(broken.start(2, crashing));
  auto code = broken.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << broken.logs();
  ASSERT_EQ(*code, 128 + SIGKILL) << broken.logs();
  for (auto& c : broken.clients)
    c->kill();
  const std::string run = broken.dir.file("run");
  const std::string ckpt = run + "/checkpoint.bin";
  const std::string good = read_file(ckpt);
  ASSERT_GT(good.size(), 1000u);
  auto write = [&](const std::string& bytes) { std::ofstream(ckpt, std::ios::binary) << bytes; };
  auto expect_refused = [&](const std::string& what) {
    auto [c, err] = try_resume(run, broken.dir);
    EXPECT_EQ(c, 2) << err;
    EXPECT_NE(err.find(what), std::string::npos) << err;
    EXPECT_EQ(testing::count_lines(err), 1) << err;
  };
  write(good.substr(0, good.size() / 2));
  expect_refused("checkpoint truncated");
  std::string flipped = good;
  flipped[flipped.size() - 100] ^= 1;
  write(flipped);
  expect_refused("SHA-256");
  std::string protocol = good;
  protocol[12] = static_cast<char>(protocol[12] + 1);
  write(protocol);
  expect_refused("protocol v");
  write(good);
  // A flag that would change the job.
  auto r = testing::run(PSGD_INIT_SERVER, {"--resume", run, "--learn_rate", "0.1"}, broken.dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--learn_rate would change it"), std::string::npos) << r.err;
  // Another job configuration: config.json edited after the checkpoint was written.
  const std::string config_path = run + "/config.json";
  auto config = nlohmann::json::parse(read_file(config_path));
  config["job"]["learn_rate"] = 0.2;
  std::ofstream(config_path) << config.dump(2);
  expect_refused("another job configuration");
  // Another model.
  config["job"]["learn_rate"] = 0.05;
  config["job"]["model"] = "cnn";
  std::ofstream(config_path) << config.dump(2);
  expect_refused("another model");
}

// A strategy that carries on without a lost worker but cannot take a new one (local_sgd) refuses
// the client that comes for the lost slot at once, before it loads anything (it was announced as
// taking over, sent the job and dropped only after loading), and the run completes without it.
TEST(Rejoin, AStrategyThatCannotTakeAReplacementRefusesItAtOnce) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  Cluster cluster;
  // clang-format off
  ASSERT_NO_FATAL_FAILURE(cluster.start(3, {
      "--train_samples", "3000", "--test_samples", "300", "--epochs", "3", "--batch_size", "32",
      "--delay", "fixed:0.03", "--psgd", "local_sgd", "--sync_period", "2", "--dead_after", "3",
      "--heartbeat_interval", "0.5"}));
  // clang-format on
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  cluster.clients[2]->kill();
  ASSERT_TRUE(wait_for_output(*cluster.server, "lost worker")) << cluster.logs();
  cluster.add_client();  // client 3 comes for the lost slot
  const auto refused = cluster.clients[3]->wait(60s);
  ASSERT_TRUE(refused.has_value()) << cluster.logs();
  EXPECT_NE(*refused, 0);
  EXPECT_NE(cluster.clients[3]->err().find("local_sgd cannot take a replacement worker"),
            std::string::npos)
      << cluster.clients[3]->err();
  ASSERT_EQ(cluster.server->wait(120s).value_or(-1), 0) << cluster.logs();
  EXPECT_EQ(cluster.server->out().find("takes over lost worker"), std::string::npos)
      << cluster.server->out();
  EXPECT_EQ(summary_in(cluster.dir.file("run"))["workers_at_end"], 2);
}

// asgd with every worker lost (both killed): the server waits --join_timeout for clients to take
// the lost slots, as when a link to all of them broke for a while (it ended the run at once:
// "every worker was lost"), and two new clients finish the run.
TEST(Rejoin, EveryWorkerLostIsWaitedForAndNewClientsFinishTheRun) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  Cluster cluster;
  // clang-format off
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, {
      "--train_samples", "2000", "--test_samples", "300", "--epochs", "2", "--batch_size", "32",
      "--delay", "fixed:0.03", "--psgd", "asgd", "--dead_after", "3",
      "--heartbeat_interval", "0.5"}));
  // clang-format on
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  cluster.clients[0]->kill();
  cluster.clients[1]->kill();
  ASSERT_TRUE(wait_for_output(*cluster.server, "every worker was lost; asgd waits up to"))
      << cluster.logs();
  cluster.add_client();
  cluster.add_client();
  ASSERT_EQ(cluster.server->wait(120s).value_or(-1), 0) << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["workers_at_end"], 2);
  for (int c : {2, 3})
    EXPECT_EQ(cluster.clients[c]->wait(30s).value_or(-1), 0) << cluster.logs();
}

// kill -9 one of 3 ssgd workers (--wait_for 2) mid-run, start a new client: it takes over the
// dead worker's slot (same data, continuing its batch order), the run completes with 3 workers,
// and summary.json records the loss and the rejoin.
TEST(Rejoin, NewClientTakesOverADeadWorkersSlot) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  Cluster cluster;
  // 5 epochs of 32 rounds with a 0.04 s pause per batch: the run is still going when the
  // replacement has loaded its data.
  // clang-format off
  const std::vector<std::string> flags{
      "--train_samples", "3000", "--test_samples", "300", "--epochs", "5", "--batch_size", "32",
      "--delay", "fixed:0.04", "--psgd", "ssgd", "--wait_for", "2", "--dead_after", "3",
      "--heartbeat_interval", "0.5"};
  // clang-format on
  ASSERT_NO_FATAL_FAILURE(cluster.start(3, flags));
  const auto start = std::chrono::steady_clock::now();
  auto server_says = [&](const std::string& what) {
    return cluster.server->out().find(what) != std::string::npos ||
           cluster.server->err().find(what) != std::string::npos;
  };
  while (!server_says("initial test loss")) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 60s) << cluster.logs();
    ASSERT_TRUE(cluster.server->running()) << cluster.logs();
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);
  const auto victim_pid = cluster.clients[2]->pid();
  cluster.clients[2]->kill();
  while (!server_says("lost worker")) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 90s) << cluster.logs();
    ASSERT_TRUE(cluster.server->running()) << "the run ended before the replacement\n"
                                           << cluster.logs();
    std::this_thread::sleep_for(50ms);
  }
  cluster.add_client();  // client 3, the replacement
  const auto replacement_pid = cluster.clients[3]->pid();
  auto code = cluster.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  auto replacement = cluster.clients[3]->wait(30s);
  ASSERT_TRUE(replacement.has_value()) << cluster.logs();
  EXPECT_EQ(*replacement, 0) << cluster.logs();
  const std::string replacement_out = cluster.clients[3]->out();
  EXPECT_NE(replacement_out.find("continuing worker"), std::string::npos) << replacement_out;
  EXPECT_NE(replacement_out.find("done: completed"), std::string::npos) << replacement_out;

  const auto config = nlohmann::json::parse(read_file(cluster.dir.file("run") + "/config.json"));
  int victim = -1;
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == victim_pid) victim = w["worker"].get<int>();
  ASSERT_GE(victim, 0) << config["workers"].dump();
  const auto summary = summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["workers_at_end"], 3);
  EXPECT_EQ(summary["lost_workers"], nlohmann::json::array());
  ASSERT_EQ(summary["events"].size(), 2u) << summary["events"].dump(1);
  EXPECT_EQ(summary["events"][0]["event"], "worker_lost");
  EXPECT_EQ(summary["events"][0]["worker"], victim);
  EXPECT_EQ(summary["events"][1]["event"], "worker_rejoined");
  EXPECT_EQ(summary["events"][1]["worker"], victim);
  EXPECT_EQ(summary["events"][1]["pid"], replacement_pid);
  EXPECT_GE(summary["events"][1]["iteration"].get<int>(),
            summary["events"][0]["iteration"].get<int>());
}

// Every strategy checkpoints now (resume_strategies_test.cc); what cannot is refused in one line:
// a simulated run (repeated, not resumed), a negative period, a run directory without a job.
TEST(Resume, WhatCannotCheckpointIsRefusedInOneLine) {
  testing::TempDir dir;
  auto r =
      testing::run(PSGD_INIT_SERVER,
                   {"--psgd", "asgd", "--checkpoint_every", "5", "--simulate", "--check"}, dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--checkpoint_every / --resume with --simulate"), std::string::npos)
      << r.err;
  EXPECT_EQ(testing::count_lines(r.err), 1) << r.err;
  r = testing::run(PSGD_INIT_SERVER, {"--checkpoint_every", "-1", "--check"}, dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--checkpoint_every -1"), std::string::npos) << r.err;
  r = testing::run(PSGD_INIT_SERVER, {"--psgd", "asgd", "--checkpoint_every", "5", "--check"}, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  r = testing::run(PSGD_INIT_SERVER, {"--resume", dir.file("nothing-here")}, dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no config.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace psgd
