// Clean stops and writes that cannot corrupt (issue 21), against real processes on loopback:
// SIGTERM on a worker of each strategy (the README's fault table), SIGTERM on the server with and
// without checkpoints, a full disk under the run directory, a crashed run's directory refused,
// and peer links on the server link's interface.
// Over 400 lines: the signal and full-disk cases share this file's helpers (summary_in,
// expect_whole_rows, resume_with_new_clients) and are read best together.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::Process;
using testing::read_file;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

// Resumes the run in `run` on a free port with two new clients (their logs in `dir`) and waits
// until it has completed.
void resume_with_new_clients(testing::TempDir& dir, const std::string& run) {
  Process resumed(PSGD_INIT_SERVER,
                  {"--resume", run, "--working_ports", "0", "--port_file", dir.file("port2"),
                   "--bind", "127.0.0.1"},
                  dir.file("resumed.out"), dir.file("resumed.err"));
  const int port = testing::wait_for_port(dir.file("port2"), resumed);
  ASSERT_GT(port, 0) << resumed.err();
  std::vector<std::unique_ptr<Process>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<Process>(
        PSGD_CLIENT, std::vector<std::string>{"--port", std::to_string(port)},
        dir.file("r" + std::to_string(i) + ".out"), dir.file("r" + std::to_string(i) + ".err")));
  }
  ASSERT_EQ(resumed.wait(120s).value_or(-1), 0) << resumed.out() << resumed.err();
}

// The worker id config.json gives the client with this pid (-1: none).
int worker_of(const Cluster& cluster, int pid) {
  const auto config = nlohmann::json::parse(read_file(cluster.dir.file("run") + "/config.json"));
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == pid) return w["worker"].get<int>();
  return -1;
}

// Every line of a CSV file has as many fields as its header.
void expect_whole_rows(const std::string& path) {
  std::istringstream in(read_file(path));
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << path;
  const auto fields = std::count(line.begin(), line.end(), ',');
  int rows = 0;
  while (std::getline(in, line)) {
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), fields) << path << ": " << line;
    ++rows;
  }
  EXPECT_EQ(read_file(path).back(), '\n') << path;
  EXPECT_GT(rows, 0) << path;
}

bool parameter_server(const std::string& psgd) {
  return psgd != "allreduce" && psgd != "broadcast";
}

struct StopCase {
  std::string psgd;
  std::vector<std::string> extra;
  bool completes;  // the README's fault table: the strategy carries on without the worker
};
void PrintTo(const StopCase& c, std::ostream* os) {
  *os << c.psgd;
}

class WorkerSigterm : public ::testing::TestWithParam<StopCase> {};

// SIGTERM on one of three workers mid-run: the worker says Leave and exits 128 + 15; the server
// counts it as lost at once (not after --dead_after, here 60 s), as for a worker that died, and
// the strategy carries on where it can.
TEST_P(WorkerSigterm, IsACleanLeaveThatTheStrategyHandlesAsALoss) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const StopCase& c = GetParam();
  Cluster cluster;
  std::vector<std::string> flags{"--train_samples", "3000",       "--test_samples", "300",
                                 "--epochs",        "2",          "--batch_size",   "32",
                                 "--delay",         "fixed:0.05", "--psgd",         c.psgd,
                                 "--dead_after",    "60"};
  flags.insert(flags.end(), c.extra.begin(), c.extra.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(3, flags));
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  std::this_thread::sleep_for(500ms);
  const int victim = worker_of(cluster, cluster.clients[2]->pid());
  ASSERT_GE(victim, 0);
  const auto signalled = std::chrono::steady_clock::now();
  cluster.clients[2]->signal(SIGTERM);
  EXPECT_EQ(cluster.clients[2]->wait(30s).value_or(-1), 128 + SIGTERM) << cluster.logs();
  EXPECT_NE(cluster.clients[2]->err().find("interrupted by SIGTERM: leaving the job"),
            std::string::npos)
      << cluster.logs();
  auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  const std::string status = summary["status"];
  if (c.completes) {
    EXPECT_EQ(*code, 0) << cluster.logs();
    EXPECT_EQ(status, "completed");
    EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({victim}));
    ASSERT_GE(summary["events"].size(), 1u) << summary.dump(1);
    EXPECT_EQ(summary["events"][0]["event"], "worker_lost");
    EXPECT_EQ(summary["events"][0]["worker"], victim);
    EXPECT_EQ(summary["events"][0]["why"], "it left (interrupted by SIGTERM)");
    EXPECT_EQ(summary["events"][0]["carried_on"], true);
    for (int i = 0; i < 2; ++i)
      EXPECT_EQ(cluster.clients[i]->wait(30s).value_or(-1), 0) << cluster.logs();
  } else {
    EXPECT_EQ(*code, 1) << cluster.logs();
    // The server ends it at once, naming the worker (a peer-to-peer worker may report its lost
    // peer link first: "lost peer worker N").
    EXPECT_LT(std::chrono::steady_clock::now() - signalled, 30s) << cluster.logs();
    EXPECT_EQ(status.rfind("failed: ", 0), 0u) << status;
    EXPECT_NE(status.find("worker " + std::to_string(victim)), std::string::npos) << status;
    if (parameter_server(c.psgd)) {
      EXPECT_NE(status.find("it left (interrupted by SIGTERM)"), std::string::npos) << status;
      EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({victim})) << summary.dump(1);
    }
    for (int i = 0; i < 2; ++i)
      EXPECT_EQ(cluster.clients[i]->wait(30s).value_or(-1), 1) << cluster.logs();
  }
}

INSTANTIATE_TEST_SUITE_P(Stops, WorkerSigterm,
                         ::testing::Values(StopCase{"ssgd", {}, false}, StopCase{"asgd", {}, true},
                                           StopCase{"ssp", {}, false},
                                           StopCase{"local_sgd", {}, true},
                                           StopCase{"allreduce", {}, false},
                                           StopCase{"broadcast", {}, false}),
                         [](const auto& info) { return info.param.psgd; });

const std::vector<std::string> kCheckpointedJob{
    "--train_samples", "3000", "--test_samples", "300",        "--epochs",           "3",
    "--batch_size",    "32",   "--delay",        "fixed:0.03", "--checkpoint_every", "5"};

// SIGTERM on a server that checkpoints: it stops after the next update (peer-to-peer: the next
// iteration at which checkpoints fall due, when the workers send their state), writes that
// update's checkpoint with every worker's state, a summary with status "interrupted", tells the
// workers (they exit 1), exits 128 + 15; the run then resumes from that checkpoint and completes.
class ServerSigtermCheckpoints : public ::testing::TestWithParam<std::string> {};

TEST_P(ServerSigtermCheckpoints, WritesACheckpointAndAnInterruptedSummaryThenResumes) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  std::vector<std::string> flags = kCheckpointedJob;
  flags.insert(flags.end(), {"--psgd", GetParam()});
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags));
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  std::this_thread::sleep_for(700ms);
  cluster.server->signal(SIGTERM);
  ASSERT_EQ(cluster.server->wait(30s).value_or(-1), 128 + SIGTERM) << cluster.logs();
  for (auto& c : cluster.clients) {
    EXPECT_EQ(c->wait(30s).value_or(-1), 1) << cluster.logs();
    // allreduce: a worker whose peer has already left may say that first (README "Faults").
    EXPECT_TRUE(
        c->err().find("the job ended without completing: interrupted") != std::string::npos ||
        (GetParam() == "allreduce" && c->err().find("lost peer worker") != std::string::npos))
        << cluster.logs();
  }
  const std::string run = cluster.dir.file("run");
  const auto summary = summary_in(run);
  EXPECT_EQ(summary["status"], "interrupted");
  ASSERT_GE(summary["events"].size(), 1u) << summary.dump(1);
  const auto& event = summary["events"].back();
  EXPECT_EQ(event["event"], "interrupted");
  EXPECT_EQ(event["signal"], "SIGTERM");
  // The checkpoint is of the last update: nothing trained is lost.
  EXPECT_EQ(event["iteration"], summary["iterations"]);
  EXPECT_NE(event["checkpoint"].get<std::string>().find("checkpoint.bin holds iteration " +
                                                        summary["iterations"].dump()),
            std::string::npos)
      << event.dump();
  EXPECT_TRUE(std::filesystem::exists(run + "/checkpoint.bin"));
  EXPECT_FALSE(std::filesystem::exists(run + "/checkpoint.bin.tmp"));
  // A new job in that directory is refused; --resume continues it.
  auto again =
      testing::run(PSGD_INIT_SERVER, {"--output", run, "--working_ports", "0"}, cluster.dir, 60);
  EXPECT_EQ(again.code, 2) << again.err;
  EXPECT_NE(again.err.find("--output " + run + ": holds a run that did not complete"),
            std::string::npos)
      << again.err;
  EXPECT_NE(again.err.find("init_server --resume " + run), std::string::npos) << again.err;
  ASSERT_NO_FATAL_FAILURE(resume_with_new_clients(cluster.dir, run));
  const auto done = summary_in(run);
  EXPECT_EQ(done["status"], "completed");
  std::vector<std::string> kinds;
  for (const auto& e : done["events"])
    kinds.push_back(e["event"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"interrupted", "resumed"})) << done.dump(1);
}

INSTANTIATE_TEST_SUITE_P(Stops, ServerSigtermCheckpoints,
                         ::testing::Values("ssgd", "asgd", "allreduce"),
                         [](const auto& info) { return info.param; });

// Without checkpoints the server stops at once, with the same summary and exit code.
TEST(ServerSigterm, WithoutCheckpointsStopsAtOnce) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  auto flags = kCheckpointedJob;
  flags.resize(flags.size() - 2);  // no --checkpoint_every
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags));
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  std::this_thread::sleep_for(500ms);  // some iterations (30 ms each) before the next evaluation
  cluster.server->signal(SIGINT);
  ASSERT_EQ(cluster.server->wait(30s).value_or(-1), 128 + SIGINT) << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "interrupted");
  EXPECT_EQ(summary["events"].back()["signal"], "SIGINT");
  EXPECT_NE(summary["events"].back()["checkpoint"].get<std::string>().find(
                "no checkpoints were asked for"),
            std::string::npos);
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 1) << cluster.logs();
  // The final figures are of the last evaluation (the initial one, an epoch is 47 iterations);
  // model.pt holds the parameters of the last iteration, and evaluate says the two differ.
  EXPECT_EQ(summary["final_test_iteration"], 0);
  ASSERT_GT(summary["iterations"].get<std::int64_t>(), 0) << summary.dump(1);
  const auto out =
      testing::run(PSGD_EVALUATE, {cluster.dir.file("run"), "--json"}, cluster.dir, 60);
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  const auto eval = nlohmann::json::parse(out.out);
  EXPECT_NE(eval["note"].get<std::string>().find(
                fmt::format("after iteration {}", summary["iterations"].get<std::int64_t>())),
            std::string::npos)
      << out.out;
}

// A server stopped while it still waits for its workers trained nothing: its summary says
// "interrupted" with 0 iterations, and a new job given that directory is refused with what to do
// (remove it), not sent to a --resume that has no checkpoint to resume.
TEST(ServerSigterm, WhileJoiningLeavesADirectoryThatSaysItHoldsNothingTrained) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, {"--train_samples", "1000"}, {}, /*start_clients=*/0));
  ASSERT_TRUE(wait_for_output(*cluster.server, "waiting for 2 workers")) << cluster.logs();
  cluster.server->signal(SIGINT);
  ASSERT_EQ(cluster.server->wait(30s).value_or(-1), 128 + SIGINT) << cluster.logs();
  const std::string run = cluster.dir.file("run");
  const auto summary = summary_in(run);
  EXPECT_EQ(summary["status"], "interrupted");
  EXPECT_EQ(summary["iterations"], 0);
  auto again =
      testing::run(PSGD_INIT_SERVER, {"--output", run, "--working_ports", "0"}, cluster.dir, 60);
  EXPECT_EQ(again.code, 2) << again.err;
  EXPECT_NE(again.err.find("holds a run that stopped before its first update"), std::string::npos)
      << again.err;
  EXPECT_NE(again.err.find("rm -r " + run), std::string::npos) << again.err;
}

// A tmpfs of `size` mounted on `dir` (root only): a disk that fills. Unmounted when it goes out
// of scope, before the test's directory is removed, whatever happens.
struct Tmpfs {
  Tmpfs(std::string dir, const std::string& size) : path(std::move(dir)) {
    mounted =
        std::system(("mount -t tmpfs -o size=" + size + " psgd-full-disk " + path + " 2>/dev/null")
                        .c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted) (void)!std::system(("umount -l " + path + " 2>/dev/null").c_str());
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  std::string path;
  bool mounted = false;
};

// A small tmpfs mounted as the run directory (root only): the first checkpoint fits, the second
// does not. The run ends "failed: cannot write <run>/checkpoint.bin: No space left on device",
// the workers are told and exit 1, every file left is whole (no .tmp), and the first checkpoint
// still resumes (in a copy of the directory on a disk with room).
TEST(FullDisk, EndsTheRunWithAClearStatusAndEveryFileWhole) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  Cluster cluster;
  const std::string run = cluster.dir.file("run");  // the cluster's --output
  std::filesystem::create_directories(run);
  // MLP: 203,530 parameters; a checkpoint (parameters and momentum) is about 1.6 MB, the model
  // 0.8 MB: 2 MB hold one checkpoint and the small files, not a second checkpoint or the model.
  const Tmpfs disk(run, "2m");
  if (!disk.mounted)
    GTEST_SKIP() << "cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)";
  // Checkpoints at the epoch ends only: the first (epoch 1) fits, the second does not, and
  // metrics.csv and workers.csv hold rows of both epochs by then.
  auto flags = kCheckpointedJob;
  flags.back() = "1000";
  flags.insert(flags.end(), {"--momentum", "0.9"});
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags));
  auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 1) << cluster.logs();
  const auto summary = summary_in(run);
  EXPECT_EQ(summary["status"],
            "failed: cannot write " + run + "/checkpoint.bin: No space left on device")
      << cluster.logs();
  for (auto& c : cluster.clients) {
    EXPECT_EQ(c->wait(30s).value_or(-1), 1) << cluster.logs();
    EXPECT_NE(c->err().find("No space left on device"), std::string::npos) << cluster.logs();
  }
  for (const auto& entry : std::filesystem::directory_iterator(run))
    EXPECT_NE(entry.path().extension(), ".tmp") << entry.path();
  EXPECT_NO_THROW(nlohmann::json::parse(read_file(run + "/config.json")));
  expect_whole_rows(run + "/metrics.csv");
  expect_whole_rows(run + "/workers.csv");
  EXPECT_EQ(summary["checkpoints_written"], 1);
  // The first checkpoint, whole: the run resumes from it and completes.
  const std::string copy = cluster.dir.file("copy");
  std::filesystem::copy(run, copy);
  std::filesystem::remove(copy + "/summary.json");
  ASSERT_NO_FATAL_FAILURE(resume_with_new_clients(cluster.dir, copy));
  EXPECT_EQ(summary_in(copy)["status"], "completed");
}

// A write that fails at an epoch's end (--save_every_epoch's model, the epoch's rows) is the
// machine's failure, not a worker's: the run ends "failed: cannot write ...", no worker is
// dropped as lost (the recorder writes while the round that ends the epoch is dispatched, and an
// I/O error there once dropped the worker whose gradient closed it), and every file left is whole.
TEST(FullDisk, AFailedEpochEndWriteEndsTheRunAndBlamesNoWorker) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  for (const std::string strategy : {"ssgd", "asgd"}) {
    SCOPED_TRACE(strategy);
    Cluster cluster;
    const std::string run = cluster.dir.file("run");
    std::filesystem::create_directories(run);
    // 512 KB: the small files fit, the first epoch's model (0.8 MB for the MLP) does not.
    const Tmpfs disk(run, "512k");
    if (!disk.mounted)
      GTEST_SKIP() << "cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)";
    ASSERT_NO_FATAL_FAILURE(
        cluster.start(2, {"--psgd", strategy, "--train_samples", "2000", "--test_samples", "300",
                          "--epochs", "3", "--batch_size", "32", "--save_every_epoch"}));
    auto code = cluster.server->wait(90s);
    ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
    EXPECT_EQ(*code, 1) << cluster.logs();
    const auto summary = summary_in(run);
    const std::string status = summary["status"];
    EXPECT_EQ(status.rfind("failed: cannot write " + run + "/", 0), 0u) << status;
    EXPECT_NE(status.find("No space left on device"), std::string::npos) << status;
    for (const auto& e : summary["events"])
      EXPECT_NE(e["event"], "worker_lost") << summary.dump(1);
    EXPECT_EQ(cluster.server->out().find("lost worker"), std::string::npos) << cluster.logs();
    EXPECT_EQ(cluster.server->err().find("lost worker"), std::string::npos) << cluster.logs();
    for (auto& c : cluster.clients) {
      EXPECT_EQ(c->wait(30s).value_or(-1), 1) << cluster.logs();
      EXPECT_NE(c->err().find("No space left on device"), std::string::npos) << cluster.logs();
    }
    for (const auto& entry : std::filesystem::directory_iterator(run))
      EXPECT_NE(entry.path().extension(), ".tmp") << entry.path();
    expect_whole_rows(run + "/metrics.csv");
  }
}

// The same in a simulated run, without root: a file size limit (ulimit -f, 500 KB) lets the small
// files through but not the model (EFBIG, "File too large", where a full disk says ENOSPC).
TEST(FullDisk, AFailedWriteEndsASimulatedRunTheSameWay) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  testing::TempDir dir;
  const std::string run = dir.file("run");
  auto r =
      testing::run("/bin/sh",
                   {"-c", "ulimit -f 1000 && exec " + std::string(PSGD_INIT_SERVER) +
                              " --simulate --node_count 2 --train_samples 1000 --test_samples 200 "
                              "--epochs 1 --output " +
                              run},
                   dir, 120);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_EQ(summary_in(run)["status"], "failed: cannot write " + run + "/model.pt: File too large")
      << r.err;
  for (const auto& entry : std::filesystem::directory_iterator(run))
    EXPECT_NE(entry.path().extension(), ".tmp") << entry.path();
  expect_whole_rows(run + "/metrics.csv");
}

// Peer-to-peer workers listen on the interface of their server link (loopback here), not on
// every interface.
TEST(PeerLinks, ListenWhereTheServerLinkIs) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(2, {"--psgd", "allreduce", "--train_samples", "2000", "--test_samples", "300",
                        "--epochs", "2", "--batch_size", "32", "--delay", "fixed:0.05"}));
  ASSERT_TRUE(wait_for_output(*cluster.clients[0], "listening for its peers on 127.0.0.1:"))
      << cluster.logs();
  const std::string out = cluster.clients[0]->out();
  const auto at = out.find("listening for its peers on 127.0.0.1:") + 37;
  const int port = std::stoi(out.substr(at));
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  // /proc/net/tcp{,6}: "sl local_address rem_address st ...", addresses as hex IP:PORT, LISTEN =
  // 0A.
  int listeners = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream in(read_file(table));
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state;
      fields >> sl >> local >> remote >> state;
      const auto colon = local.rfind(':');
      if (state != "0A" || std::stoi(local.substr(colon + 1), nullptr, 16) != port) continue;
      ++listeners;
      EXPECT_EQ(local.substr(0, colon), "0100007F") << table << ": " << line;
    }
  }
  EXPECT_EQ(listeners, 1);
  ASSERT_EQ(cluster.server->wait(90s).value_or(-1), 0) << cluster.logs();
}

}  // namespace
}  // namespace psgd
