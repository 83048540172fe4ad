// --allreduce_on_loss shrink with real processes (psgd/allreduce.h): a 4-worker allreduce run
// loses a worker in the middle of an epoch (kill -9, SIGTERM, or SIGSTOP: silent past
// --dead_after) and completes with the other 3, every survivor ending with the very parameters
// the server saved; summary.json's events say who was lost and what the ring became. Without the
// option the loss ends the run, naming the worker and the option. And --simulate's --fail.
#include <gtest/gtest.h>

#include <csignal>
#include <regex>
#include <set>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::Process;
using testing::read_file;
using testing::summary_in;
using namespace std::chrono_literals;

std::vector<std::string> job_flags(const std::string& on_loss) {
  // Slow batches (--delay) so that the run is well under way when a worker goes.
  return {"--psgd", "allreduce", "--train_samples", "4000", "--test_samples", "400", "--epochs",
          "2", "--batch_size", "32", "--delay", "fixed:0.1",
          // Silence counts as a loss after 10 s: a loaded machine may starve a live worker
          // for a few seconds, and a survivor declared lost would change what the test sees.
          "--dead_after", "10", "--heartbeat_interval", "1", "--allreduce_on_loss", on_loss,
          "--seed", "5"};
}

// Waits until the 4 workers have linked up and trained for a while: the first epoch (31
// iterations of at least 0.1 s) is under way.
void wait_for_training(Cluster& cluster) {
  for (auto& client : cluster.clients)
    ASSERT_TRUE(testing::wait_for_output(*client, "linked with its", 120s)) << cluster.logs();
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(cluster.server->running()) << cluster.logs();
}

int worker_of_pid(const Cluster& cluster, int pid) {
  const auto config = nlohmann::json::parse(read_file(cluster.dir.file("run") + "/config.json"));
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == pid) return w["worker"].get<int>();
  return -1;
}

// The parameters' SHA-256 a client printed when it finished ("" if it printed none).
std::string printed_hash(const Process& client) {
  const std::string out = client.out() + client.err();
  std::smatch m;
  if (std::regex_search(out, m, std::regex("parameters sha256 ([0-9a-f]{64})"))) return m[1];
  return "";
}

void lose_one_worker_and_complete(int sig) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  auto flags = job_flags("shrink");
  flags.push_back("--timeline");
  ASSERT_NO_FATAL_FAILURE(cluster.start(4, flags));
  ASSERT_NO_FATAL_FAILURE(wait_for_training(cluster));
  const int victim_pid = cluster.clients[1]->pid();
  cluster.clients[1]->signal(sig);
  const auto code = cluster.server->wait(240s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed") << cluster.logs();
  const int victim = worker_of_pid(cluster, victim_pid);
  ASSERT_GE(victim, 0);
  EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({victim}));
  // The events: the loss, then the ring it left.
  const auto& events = summary["events"];
  ASSERT_EQ(events.size(), 2u) << events.dump(1);
  EXPECT_EQ(events[0]["event"], "worker_lost");
  EXPECT_EQ(events[0]["worker"], victim);
  EXPECT_EQ(events[0]["carried_on"], true);
  const auto& ring = events[1];
  EXPECT_EQ(ring["event"], "ring_reformed");
  EXPECT_EQ(ring["lost"], nlohmann::json::array({victim}));
  EXPECT_EQ(ring["ring_size"], 3);
  std::vector<int> members;
  for (int w = 0; w < 4; ++w)
    if (w != victim) members.push_back(w);
  EXPECT_EQ(ring["members"], nlohmann::json(members));
  EXPECT_GT(ring["iteration"].get<int>(), 0);
  EXPECT_LT(ring["iteration"].get<int>(), summary["iterations"].get<int>());
  // --redundancy 1: the lost worker's block is trained on by nobody any more.
  EXPECT_EQ(ring["untrained_blocks"], nlohmann::json::array({victim})) << ring.dump();
  EXPECT_GT(ring["untrained_samples"].get<int>(), 900);
  EXPECT_EQ(ring["epoch"], 1) << "lost in the first epoch";
  // The timeline marks it on the server's track.
  const auto trace = nlohmann::json::parse(read_file(cluster.dir.file("run") + "/timeline.json"));
  int marks = 0;
  for (const auto& e : trace["traceEvents"])
    marks += e["name"] == "ring_reformed" && e["args"]["ring_size"] == 3;
  EXPECT_EQ(marks, 1);
  // Every survivor ends with the parameters the server saved, bit for bit.
  const std::string saved = summary["parameters_sha256"];
  for (std::size_t c = 0; c < cluster.clients.size(); ++c) {
    if (c == 1) continue;
    const auto client_code = cluster.clients[c]->wait(60s);
    ASSERT_TRUE(client_code.has_value()) << cluster.logs();
    EXPECT_EQ(*client_code, 0) << cluster.logs();
    EXPECT_EQ(printed_hash(*cluster.clients[c]), saved) << "client " << c << "\n" << cluster.logs();
  }
  cluster.clients[1]->kill();
}

TEST(ElasticAllreduce, AKilledWorkerLeavesARingOfThreeThatCompletes) {
  lose_one_worker_and_complete(SIGKILL);
}

TEST(ElasticAllreduce, AWorkerThatLeavesOnSigtermLeavesARingOfThreeThatCompletes) {
  lose_one_worker_and_complete(SIGTERM);
}

TEST(ElasticAllreduce, AHungWorkerIsLostAfterDeadAfterAndTheRingGoesOn) {
  lose_one_worker_and_complete(SIGSTOP);
}

TEST(ElasticAllreduce, WithoutTheOptionALostWorkerFailsTheRunNamingIt) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(4, job_flags("fail")));
  ASSERT_NO_FATAL_FAILURE(wait_for_training(cluster));
  const int victim_pid = cluster.clients[2]->pid();
  cluster.clients[2]->kill();
  const auto code = cluster.server->wait(120s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 1) << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  const int victim = worker_of_pid(cluster, victim_pid);
  EXPECT_EQ(summary["lost_workers"], nlohmann::json::array({victim})) << cluster.logs();
  // The server names the lost worker and the option, or a peer's report of its broken link does.
  const std::string status = summary["status"];
  const std::string v = std::to_string(victim);
  if (status.find("lost worker " + v) != std::string::npos) {
    EXPECT_NE(status.find("--allreduce_on_loss shrink"), std::string::npos) << status;
  } else {
    EXPECT_NE(status.find("lost peer worker " + v), std::string::npos) << status;
  }
}

}  // namespace
}  // namespace psgd
