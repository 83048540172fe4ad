// --psgd allreduce --allreduce_backend shm with real processes: it learns and the workers agree
// (the server compares their parameter hashes every epoch); a worker killed or stopped mid-run
// ends the run, naming it, and every other client exits instead of waiting in the shared segment;
// a client that may not use shared memory is refused with the reason.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::Cluster;

using testing::summary_of;

const std::vector<std::string> kShm{"--psgd", "allreduce", "--allreduce_backend", "shm"};

// A client of `cluster` in a namespace of its own: `unshare <flags>`, then `setup` (a shell
// command, as root inside it), then the client; its output goes to <name>.out/.err. The client
// replaces the shell, unless `fork` (then it is the shell's child: the pid after setup's);
// `args` are more of the client's flags.
std::unique_ptr<testing::Process> client_unshared(const Cluster& cluster,
                                                  std::vector<std::string> flags,
                                                  const std::string& setup, const std::string& name,
                                                  bool fork = false, const std::string& args = "") {
  const std::string client = std::string(PSGD_CLIENT) + " --ip 127.0.0.1 --port " +
                             std::to_string(cluster.port) + " --connect_timeout 10 " + args;
  flags.insert(flags.end(),
               {"/bin/sh", "-c",
                fork ? setup + " && " + client + "; exit $?" : setup + " && exec " + client});
  return std::make_unique<testing::Process>(
      "/usr/bin/unshare", flags, cluster.dir.file(name + ".out"), cluster.dir.file(name + ".err"));
}

// Whether `unshare <flag> sh -c <setup>` works here: root is not enough in a container without
// CAP_SYS_ADMIN or under a profile that denies mounts.
bool can_unshare(const std::string& flag, const std::string& setup) {
  const std::string command =
      "/usr/bin/unshare " + flag + " /bin/sh -c '" + setup + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(ShmAllreduceRun, FourWorkersLearnWithIdenticalModels) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(4, with(kShm, {"--train_samples", "4000", "--test_samples", "1000", "--epochs",
                                   "2", "--batch_size", "32", "--seed", "5"})));
  const auto code = cluster.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs();
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << cluster.logs();
  const auto summary = summary_of(cluster);
  EXPECT_EQ(summary["status"], "completed");
  // 4000 / (4 x 32) = 32 iterations an epoch (rounded up); the hashes matched at every epoch end.
  EXPECT_EQ(summary["iterations"], 2 * 32);
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.6) << summary.dump(1);
  // Nothing crossed a network.
  EXPECT_EQ(summary["peer_bytes_per_worker"].get<double>(), 0) << summary.dump(1);
  EXPECT_NE(cluster.clients[0]->out().find("joined the shared-memory allreduce of 4"),
            std::string::npos)
      << cluster.logs();
}

class ShmAllreduceLoss : public ::testing::TestWithParam<int> {};

TEST_P(ShmAllreduceLoss, EndsTheRunAndEveryOtherClientExits) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const int sig = GetParam();
  Cluster cluster;
  // Slow batches so that the run is still under way when a worker goes.
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(3, with(kShm, {"--train_samples", "3000", "--test_samples", "300", "--epochs",
                                   "3", "--batch_size", "32", "--delay", "fixed:0.05",
                                   "--dead_after", "3", "--heartbeat_interval", "0.5"})));
  const auto start = std::chrono::steady_clock::now();
  auto joined = [&] {  // every client is in the group: training is under way
    for (auto& c : cluster.clients)
      if (c->out().find("joined the shared-memory allreduce") == std::string::npos) return false;
    return true;
  };
  while (!joined()) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 60s) << cluster.logs();
    ASSERT_TRUE(cluster.server->running()) << cluster.logs();
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(500ms);
  const auto lost_at = std::chrono::steady_clock::now();
  const auto victim_pid = cluster.clients[2]->pid();
  cluster.clients[2]->signal(sig);
  const auto code = cluster.server->wait(60s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 1) << cluster.logs();
  const std::string status = summary_of(cluster)["status"];
  EXPECT_NE(status.find("lost worker"), std::string::npos) << status << cluster.logs();
  // The worker named is the one signalled (config.json has each worker's pid): the others, waiting
  // for it in the segment, kept answering heartbeats (the collective runs on the compute thread).
  const auto config =
      nlohmann::json::parse(testing::read_file(cluster.dir.file("run") + "/config.json"));
  int victim = -1;
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == victim_pid) victim = w["worker"].get<int>();
  EXPECT_NE(status.find("lost worker " + std::to_string(victim)), std::string::npos)
      << status << cluster.logs();
  // No hint at --allreduce_on_loss shrink: a shm group cannot re-form.
  EXPECT_EQ(status.find("shrink"), std::string::npos) << status;
  // The others were blocked in the segment: they see the dead process, or (stopped, not dead)
  // the server hanging up, and exit rather than wait out --io_timeout (30 s here).
  for (int i = 0; i < 2; ++i) {
    const auto c = cluster.clients[static_cast<std::size_t>(i)]->wait(20s);
    EXPECT_TRUE(c.has_value()) << "client " << i << " hung\n" << cluster.logs();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - lost_at, 25s) << cluster.logs();
  cluster.clients[2]->kill();
}

INSTANTIATE_TEST_SUITE_P(Faults, ShmAllreduceLoss, ::testing::Values(SIGKILL, SIGSTOP),
                         [](const auto& info) {
                           return std::string(info.param == SIGKILL ? "killed" : "stopped");
                         });

TEST(ShmAllreduceRun, AClientWithoutSharedMemoryIsRefusedWithTheReason) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(
      2, with(kShm, {"--train_samples", "2000", "--test_samples", "200", "--epochs", "1"}),
      {{}, {"--shared_memory", "off"}}));
  const auto refused = cluster.clients[1]->wait(60s);
  ASSERT_TRUE(refused.has_value()) << "client hung\n" << cluster.logs();
  EXPECT_NE(*refused, 0);
  const std::string said = cluster.clients[1]->out() + cluster.clients[1]->err();
  EXPECT_NE(said.find("--allreduce_backend shm sums the workers' gradients in shared memory"),
            std::string::npos)
      << cluster.logs();
  const auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_NE(*code, 0) << cluster.logs();
  cluster.clients[0]->wait(30s);
}

// A worker on another machine (here: a client whose hostname differs, in a UTS namespace of its
// own) cannot open the segment; the server says so when the peers would link up, instead of
// letting the workers wait for it until --io_timeout.
TEST(ShmAllreduceRun, WorkersOnTwoMachinesAreRefusedBeforeTraining) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a UTS namespace (unshare --uts)";
  if (!can_unshare("--uts", "hostname psgd-other-host")) {
    GTEST_SKIP() << "cannot make a UTS namespace here (unshare --uts failed)";
  }
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(
      2, with(kShm, {"--train_samples", "2000", "--test_samples", "200", "--epochs", "1"}), {},
      /*start_clients=*/1));
  const auto other = client_unshared(cluster, {"--uts"}, "hostname psgd-other-host", "other");
  const auto t0 = std::chrono::steady_clock::now();
  const auto code = cluster.server->wait(60s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_NE(*code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "waited for --io_timeout";
  const std::string status = summary_of(cluster)["status"];
  EXPECT_NE(status.find("--allreduce_backend shm needs every worker on one machine"),
            std::string::npos)
      << status << cluster.logs();
  EXPECT_NE(status.find("psgd-other-host"), std::string::npos) << status;
  other->wait(30s);
}

// Worker 0 in a /dev/shm of its own (a private mount namespace: as on another machine that
// reports the same host name) makes a segment the others never see; killed while they wait for
// it, the run ends naming it and what the workers were doing, and the others stop waiting then,
// not at --io_timeout (30 s here).
TEST(ShmAllreduceRun, AWorker0LostWhileTheOthersWaitForItsSegmentEndsEveryWait) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace (unshare -m)";
  if (!can_unshare("-m", "mount -t tmpfs -o size=16M tmpfs /dev/shm")) {
    GTEST_SKIP() << "cannot mount a tmpfs in a mount namespace here (unshare -m failed)";
  }
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(
      3, with(kShm, {"--train_samples", "2000", "--test_samples", "200", "--epochs", "1"}), {},
      /*start_clients=*/0));
  const auto first =
      client_unshared(cluster, {"-m"}, "mount -t tmpfs -o size=16M tmpfs /dev/shm", "first");
  ASSERT_TRUE(testing::wait_for_output(*cluster.server, "worker 0 joined", 30s))
      << cluster.logs() << first->out() << first->err();
  cluster.add_client();
  cluster.add_client();
  ASSERT_TRUE(testing::wait_for_output(*cluster.server, "linking up with each other", 60s))
      << cluster.logs() << first->out() << first->err();
  std::this_thread::sleep_for(500ms);
  const auto t0 = std::chrono::steady_clock::now();
  first->signal(SIGKILL);
  const auto code = cluster.server->wait(30s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  const std::string status = summary_of(cluster)["status"];
  EXPECT_NE(status.find("lost worker 0"), std::string::npos) << status << cluster.logs();
  EXPECT_NE(status.find("while the workers were linking up with each other"), std::string::npos)
      << status;
  for (auto& c : cluster.clients) {
    EXPECT_TRUE(c->wait(15s).has_value()) << "a client waited on\n" << cluster.logs();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s) << cluster.logs();
  first->wait(10s);
}

// A worker in a PID namespace of its own (a container sharing /dev/shm) records a pid that means
// nothing here: the others must not take it for dead. Its pid is made one that no process outside
// can have (above this machine's pid_max), so that checking it here would fail the run; it is
// slowed so that the other worker waits for it, and checks.
TEST(ShmAllreduceRun, AWorkerInAnotherPidNamespaceIsNotTakenForDead) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a PID namespace (unshare --pid)";
  const std::string high_pid = "echo 4000000 > /proc/sys/kernel/ns_last_pid";
  if (!can_unshare("--pid --fork --mount-proc", high_pid)) {
    GTEST_SKIP() << "cannot make a PID namespace here (unshare --pid failed)";
  }
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(
      2, with(kShm, {"--train_samples", "2000", "--test_samples", "200", "--epochs", "2"}), {},
      /*start_clients=*/1));
  const auto other = client_unshared(cluster, {"--pid", "--fork", "--mount-proc", "--kill-child"},
                                     high_pid, "other", /*fork=*/true,
                                     // Slow (80x its compute): the other waits for it in the
                                     // segment long enough to check its pid every 50 ms.
                                     "--slowdown 80");
  const auto code = cluster.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs() << other->out() << other->err();
  EXPECT_EQ(summary_of(cluster)["status"], "completed");
  EXPECT_EQ(other->wait(30s).value_or(-1), 0) << other->out() << other->err();
  // The premise: the worker reported a pid above any this machine's own processes can have.
  const auto config =
      nlohmann::json::parse(testing::read_file(cluster.dir.file("run") + "/config.json"));
  int highest = 0;
  for (const auto& w : config["workers"])
    highest = std::max(highest, w["pid"].get<int>());
  EXPECT_GT(highest, 4'000'000) << config["workers"].dump();
}

}  // namespace
}  // namespace psgd
