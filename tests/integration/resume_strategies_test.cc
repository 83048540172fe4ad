// Checkpoint and resume for every strategy, with real processes (issue 21): a server killed with
// SIGKILL right after its 5th checkpoint and restarted with --resume, its old clients redialling
// and joining again. The synchronous strategies, with workers that keep state of their own
// (error-feedback residuals, worker-side momentum, local optimisers), end with the parameters of
// the uninterrupted run, bit for bit; asgd and ssp, whose result depends on arrival order,
// continue from the checkpoint (its iteration, epoch and metrics rows; asgd's model average) and
// complete the job.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <sstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::metrics_epochs;
using testing::Process;
using testing::read_file;
using testing::summary_in;
using namespace std::chrono_literals;

struct Case {
  std::string name;
  std::vector<std::string> flags;
  int nodes = 2;
  bool exact = true;  // the resumed run ends with the uninterrupted run's parameters
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

const Case kCases[] = {
    // sign: error feedback and momentum on the workers (--momentum_at auto).
    {"ssgd_sign", {"--psgd", "ssgd", "--codec", "sign"}},
    // Dropout (cnn_bn): a resumed worker draws the masks of the batches it continues with.
    {"ssgd_dropout", {"--psgd", "ssgd", "--model", "cnn_bn"}},
    {"local_sgd", {"--psgd", "local_sgd", "--sync_period", "3"}},
    {"allreduce", {"--psgd", "allreduce"}},
    {"allreduce_gloo", {"--psgd", "allreduce", "--allreduce_backend", "gloo"}},
    // The resumed server's workers make a new segment (a new peer key).
    {"allreduce_shm", {"--psgd", "allreduce", "--allreduce_backend", "shm"}},
    // PowerSGD's error feedback and warm-start Q are each worker's own state in the checkpoint.
    {"allreduce_powersgd", {"--psgd", "allreduce", "--codec", "powersgd", "--codec_rank", "2"}},
    {"allreduce_fp16", {"--psgd", "allreduce", "--codec", "fp16"}},
    // Bucketed (--overlap): its checkpoints are allreduce's; the resumed run ends bit-identical.
    {"allreduce_overlap",
     {"--psgd", "allreduce", "--codec", "fp16", "--overlap", "--bucket_mb", "0.1"}},
    // A model of 1.6 M parameters with Adam's three slots (amsgrad): each worker's state is four
    // times its parameters, more than a gradient frame ever is.
    {"allreduce_adam_dnn",
     {"--psgd", "allreduce", "--optimizer", "adam", "--amsgrad", "--model", "dnn", "--learn_rate",
      "0.001"}},
    {"broadcast_sign", {"--psgd", "broadcast", "--codec", "sign"}},
    {"ccdc", {"--psgd", "broadcast", "--codec", "ccdc", "--redundancy", "2"}, 3},
    {"gc", {"--psgd", "ssgd", "--codec", "gc", "--redundancy", "2"}, 2, false},
    // Worker momentum, and the model average (--model_average auto: ema:0.99) in the checkpoint.
    {"asgd", {"--psgd", "asgd"}, 2, false},
    {"ssp", {"--psgd", "ssp", "--staleness", "1"}, 2, false},
};

std::vector<std::string> job_flags(const Case& c) {
  std::vector<std::string> flags{"--train_samples", "2000", "--test_samples",     "300",
                                 "--epochs",        "3",    "--batch_size",       "32",
                                 "--seed",          "5",    "--momentum",         "0.9",
                                 "--dead_after",    "20",   "--checkpoint_every", "10"};
  flags.insert(flags.end(), c.flags.begin(), c.flags.end());
  return flags;
}

// So that a client redialling a freed port cannot join another test's server.
struct Passphrase {
  Passphrase() { ::setenv("PSGD_PASSPHRASE", "resume strategies test", 1); }
  ~Passphrase() { ::unsetenv("PSGD_PASSPHRASE"); }
};

class ResumeEveryStrategy : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeEveryStrategy, KilledServerResumesAndCompletes) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const Case& c = GetParam();
  Passphrase passphrase;
  const auto flags = job_flags(c);

  std::string want;
  nlohmann::json expected;
  if (c.exact) {
    Cluster whole;
    ASSERT_NO_FATAL_FAILURE(whole.start(c.nodes, flags));
    auto code = whole.server->wait(120s);
    ASSERT_TRUE(code.has_value()) << "server hung\n" << whole.logs();
    ASSERT_EQ(*code, 0) << whole.logs();
    expected = summary_in(whole.dir.file("run"));
    ASSERT_EQ(expected["status"], "completed");
    want = expected["parameters_sha256"];
  }

  std::vector<std::string> crashing = flags;
  crashing.insert(crashing.end(), {"--crash_after_checkpoints", "5"});
  Cluster broken;
  broken.client_connect_timeout = "60";  // they redial while the resumed server starts
  ASSERT_NO_FATAL_FAILURE(broken.start(c.nodes, crashing));
  auto code = broken.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << broken.logs();
  ASSERT_EQ(*code, 128 + SIGKILL) << broken.logs();
  const std::string run = broken.dir.file("run");
  ASSERT_TRUE(std::filesystem::exists(run + "/checkpoint.bin"));
  const std::vector<int> before = metrics_epochs(run);

  ASSERT_NO_FATAL_FAILURE(broken.resume_with_the_same_clients());
  const auto got = summary_in(run);
  EXPECT_EQ(got["status"], "completed");
  EXPECT_EQ(got["resumed"], true);
  EXPECT_EQ(got["epochs"], 3);
  // metrics.csv continues from the checkpoint's epoch: every epoch once, in order.
  EXPECT_EQ(metrics_epochs(run), (std::vector<int>{0, 1, 2, 3}));
  ASSERT_GE(before.size(), 1u);
  nlohmann::json event;
  for (const auto& e : got["events"])
    if (e["event"] == "resumed") event = e;
  ASSERT_FALSE(event.is_null()) << got.dump(1);
  EXPECT_GT(event["iteration"].get<std::int64_t>(), 0);
  EXPECT_EQ(event["epoch"].get<int>(), before.back());  // the rows the crash left
  EXPECT_NE(read_file(broken.dir.file("resumed.out")).find("resuming"), std::string::npos)
      << read_file(broken.dir.file("resumed.out"));
  if (c.exact) {
    EXPECT_EQ(got["iterations"], expected["iterations"]);
    EXPECT_EQ(got["samples"], expected["samples"]);
    EXPECT_EQ(got["parameters_sha256"], want)
        << read_file(broken.dir.file("resumed.out")) << broken.logs();
    EXPECT_EQ(got["final_test_loss"], expected["final_test_loss"]);
  } else {
    // It learned: far above the 10 % of guessing after 3 epochs of the MLP.
    EXPECT_GT(got["final_test_accuracy"].get<double>(), 0.6) << got.dump(1);
  }
}

// A strategy that carries on without a lost worker and a server that then crashes: worker 2
// is killed with SIGKILL, the server goes on with the others and checkpoints (the lost worker has
// no state in it), then the server is killed too. The resumed server waits for three workers
// again: the two old clients, still redialling, and a new client that takes worker 2's slot
// (fresh state, worker 2's batch order from its last count). The run completes, and summary.json
// keeps the loss that happened before the crash.
class ResumeAfterALostWorker : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeAfterALostWorker, KilledWorkerThenKilledServerResumesWithANewClient) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  Cluster cluster;
  // clang-format off
  std::vector<std::string> flags{
      "--train_samples", "3000", "--test_samples", "300", "--epochs", "3", "--batch_size", "32",
      "--seed", "5", "--momentum", "0.9", "--delay", "fixed:0.02",
      "--checkpoint_every", "10", "--dead_after", "3", "--heartbeat_interval", "0.5"};
  // clang-format on
  flags.insert(flags.end(), GetParam().flags.begin(), GetParam().flags.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(3, flags));
  const auto start = std::chrono::steady_clock::now();
  auto count = [&](const std::string& what) {
    const std::string all = cluster.server->out() + cluster.server->err();
    std::size_t n = 0;
    for (auto at = all.find(what); at != std::string::npos; at = all.find(what, at + 1))
      ++n;
    return n;
  };
  auto wait_for = [&](const std::string& what, std::size_t times) {
    while (count(what) < times) {
      ASSERT_LT(std::chrono::steady_clock::now() - start, 90s) << what << "\n" << cluster.logs();
      ASSERT_TRUE(cluster.server->running()) << "the run ended early\n" << cluster.logs();
      std::this_thread::sleep_for(20ms);
    }
  };
  ASSERT_NO_FATAL_FAILURE(wait_for("checkpoint at iteration", 1));
  cluster.clients[2]->kill();
  ASSERT_NO_FATAL_FAILURE(wait_for("lost worker", 1));
  // A checkpoint written after the loss (two more: the first may have been collecting already).
  const std::size_t before = count("checkpoint at iteration");
  ASSERT_NO_FATAL_FAILURE(wait_for("checkpoint at iteration", before + 2));
  cluster.server->kill();
  const std::string run = cluster.dir.file("run");
  ASSERT_TRUE(std::filesystem::exists(run + "/checkpoint.bin"));

  Process resumed(PSGD_INIT_SERVER,
                  {"--resume", run, "--working_ports", std::to_string(cluster.port), "--bind",
                   "127.0.0.1", "--join_timeout", "60"},
                  cluster.dir.file("resumed.out"), cluster.dir.file("resumed.err"));
  cluster.add_client();  // client 3: worker 2's slot
  auto code = resumed.wait(120s);
  ASSERT_TRUE(code.has_value()) << "resumed server hung\n"
                                << resumed.out() << resumed.err() << cluster.logs();
  ASSERT_EQ(*code, 0) << resumed.out() << resumed.err() << cluster.logs();
  for (std::size_t i : {0u, 1u, 3u}) {
    auto client_code = cluster.clients[i]->wait(30s);
    ASSERT_TRUE(client_code.has_value()) << cluster.logs();
    EXPECT_EQ(*client_code, 0) << "client " << i << "\n" << cluster.logs();
  }
  const auto got = summary_in(run);
  EXPECT_EQ(got["status"], "completed");
  EXPECT_EQ(got["resumed"], true);
  EXPECT_EQ(got["epochs"], 3);
  EXPECT_EQ(got["workers_at_end"], 3);
  EXPECT_EQ(metrics_epochs(run), (std::vector<int>{0, 1, 2, 3}));
  std::vector<std::string> events;
  for (const auto& e : got["events"])
    events.push_back(e["event"]);
  EXPECT_EQ(events, (std::vector<std::string>{"worker_lost", "resumed"})) << got.dump(1);
  EXPECT_GT(got["final_test_accuracy"].get<double>(), 0.6) << got.dump(1);
}

// The strategies that carry on without a lost worker (README "Faults").
INSTANTIATE_TEST_SUITE_P(
    Strategies, ResumeAfterALostWorker,
    ::testing::Values(Case{"asgd", {"--psgd", "asgd"}, 3, false},
                      Case{"local_sgd", {"--psgd", "local_sgd", "--sync_period", "3"}, 3, false},
                      Case{"ssgd_wait_for", {"--psgd", "ssgd", "--wait_for", "2"}, 3, false}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Strategies, ResumeEveryStrategy, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

// A strategy that cannot go on without a worker: worker 1 is killed with SIGKILL after a few
// checkpoints, the run fails naming it, and `init_server --resume` with two new clients continues
// from the last checkpoint before the loss and ends with the parameters of the uninterrupted
// run, bit for bit.
class ResumeAFailedRun : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeAFailedRun, AKilledWorkerFailsTheRunAndResumeEndsBitIdentical) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Passphrase passphrase;
  std::vector<std::string> flags = job_flags(GetParam());
  flags.insert(flags.end(), {"--delay", "fixed:0.01"});
  Cluster whole;
  ASSERT_NO_FATAL_FAILURE(whole.start(2, flags));
  ASSERT_EQ(whole.server->wait(120s).value_or(-1), 0) << whole.logs();
  const auto expected = summary_in(whole.dir.file("run"));
  ASSERT_EQ(expected["status"], "completed");

  Cluster broken;
  ASSERT_NO_FATAL_FAILURE(broken.start(2, flags));
  const auto start = std::chrono::steady_clock::now();
  auto checkpoints = [&] {
    const std::string err = broken.server->err();
    std::size_t n = 0;
    for (auto at = err.find("checkpoint at iteration"); at != std::string::npos;
         at = err.find("checkpoint at iteration", at + 1))
      ++n;
    return n;
  };
  while (checkpoints() < 3) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 90s) << broken.logs();
    ASSERT_TRUE(broken.server->running()) << "the run ended early\n" << broken.logs();
    std::this_thread::sleep_for(20ms);
  }
  broken.clients[1]->kill();
  ASSERT_EQ(broken.server->wait(60s).value_or(-1), 1) << broken.logs();
  const std::string run = broken.dir.file("run");
  const auto failed = summary_in(run);
  // allreduce: the server, or first a worker's broken peer link, names the loss (README "Faults").
  const std::string status = failed["status"];
  ASSERT_TRUE(
      status.starts_with("failed: lost worker") ||
      (status.starts_with("failed: ") && status.find("lost peer worker") != std::string::npos))
      << failed.dump(1);
  // It says how to continue.
  EXPECT_NE(broken.server->err().find("continue the run with init_server --resume " + run),
            std::string::npos)
      << broken.server->err();

  const auto resumed = broken.start_resumed();
  const int port = testing::wait_for_port(broken.dir.file("port2"), *resumed);
  ASSERT_GT(port, 0) << resumed->err();
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<Process>(
        PSGD_CLIENT, std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port)},
        broken.dir.file("new" + std::to_string(i) + ".out"),
        broken.dir.file("new" + std::to_string(i) + ".err")));
  }
  ASSERT_EQ(resumed->wait(120s).value_or(-1), 0) << resumed->out() << resumed->err();
  for (auto& c : clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << c->out() << c->err();
  const auto got = summary_in(run);
  EXPECT_EQ(got["status"], "completed");
  EXPECT_EQ(got["resumed"], true);
  EXPECT_EQ(got["iterations"], expected["iterations"]);
  EXPECT_EQ(got["parameters_sha256"], expected["parameters_sha256"]) << resumed->out();
}

INSTANTIATE_TEST_SUITE_P(Strategies, ResumeAFailedRun,
                         ::testing::Values(Case{"ssgd_sign", {"--psgd", "ssgd", "--codec", "sign"}},
                                           Case{"allreduce", {"--psgd", "allreduce"}},
                                           Case{"allreduce_overlap",
                                                {"--psgd", "allreduce", "--overlap", "--bucket_mb",
                                                 "0.1"}}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace psgd
