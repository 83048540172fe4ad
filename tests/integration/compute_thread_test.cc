// allreduce --overlap's compute thread (experiments/client/compute_thread.h) against real
// processes on loopback: a client whose step takes long (a --delay pause inside its detached
// computation) keeps its links alive, and it ends promptly, with its usual message, when the
// server dies or a SIGTERM arrives in the middle of that step. No speed is asserted: only that
// a link stays alive and that a client does not sit out a 30 s pause before it exits.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

// Two workers, allreduce --overlap, every step paused `delay` seconds; a worker silent for 1.5 s
// is lost, and the server's heartbeats go out on links idle for 0.2 s. The clients keep their
// default --heartbeat_interval (2 s): told the server's --dead_after, they beat every 0.5 s.
std::vector<std::string> job(const char* delay, const char* train_samples) {
  return {"--psgd",      "allreduce",      "--overlap", "--train_samples",
          train_samples, "--test_samples", "200",       "--batch_size",
          "64",          "--epochs",       "1",         "--delay",
          delay,         "--dead_after",   "1.5",       "--heartbeat_interval",
          "0.2"};
}

// Each step pauses 2.5 s, longer than --dead_after: the run completes only because the client's
// event thread answers heartbeats (and its peer's ring hops) while the compute thread pauses.
// (With the step on the event thread the server lost both workers after 1.5 s.)
TEST(ComputeThread, AClientKeepsItsLinksAliveWhileItComputes) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, job("fixed:2.5", "256")));
  const auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs();
  const auto summary = summary_in(cluster.dir.file("run"));
  EXPECT_EQ(summary["status"], "completed") << summary.dump(1);
  EXPECT_EQ(summary["iterations"], 2);
  EXPECT_TRUE(summary["lost_workers"].empty()) << summary.dump(1);
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << cluster.logs();
}

// Waits until the run's first step is under way (the server has evaluated the initial model
// and the clients got their parameters), then a little into the 30 s pause.
void into_the_first_step(Cluster& cluster) {
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  std::this_thread::sleep_for(1s);
  for (auto& c : cluster.clients)
    ASSERT_TRUE(c->running()) << cluster.logs();
}

// SIGTERM in the middle of a step: the client leaves as always ("interrupted by SIGTERM"), exit
// code 128 + 15, without sitting out the pause (the compute thread's sleep ends at stop(), and
// the thread is joined before the process exits).
TEST(ComputeThread, SigtermMidStepEndsTheClientPromptly) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, job("fixed:30", "512")));
  ASSERT_NO_FATAL_FAILURE(into_the_first_step(cluster));
  const auto signalled = std::chrono::steady_clock::now();
  cluster.clients[1]->signal(SIGTERM);
  const auto code = cluster.clients[1]->wait(25s);
  ASSERT_TRUE(code.has_value()) << "client sat out its pause\n" << cluster.logs();
  EXPECT_EQ(*code, 128 + SIGTERM) << cluster.logs();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, 15s) << cluster.logs();
  EXPECT_NE(cluster.clients[1]->err().find("interrupted by SIGTERM: leaving the job"),
            std::string::npos)
      << cluster.logs();
  // allreduce cannot go on without it: the server ends the run, and the other client with it.
  EXPECT_EQ(cluster.server->wait(25s).value_or(-1), 1) << cluster.logs();
  EXPECT_EQ(cluster.clients[0]->wait(25s).value_or(-1), 1) << cluster.logs();
}

// The server dies in the middle of a step: each client says it lost the server and, with
// --reconnects 0, exits 1 at once rather than after its pause.
TEST(ComputeThread, ADeadServerMidStepEndsTheClientsPromptly) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(2, job("fixed:30", "512"), {{"--reconnects", "0"}, {"--reconnects", "0"}}));
  ASSERT_NO_FATAL_FAILURE(into_the_first_step(cluster));
  cluster.server->kill();
  const auto killed = std::chrono::steady_clock::now();
  for (auto& c : cluster.clients) {
    const auto code = c->wait(25s);
    ASSERT_TRUE(code.has_value()) << "client sat out its pause\n" << cluster.logs();
    EXPECT_EQ(*code, 1) << cluster.logs();
    EXPECT_NE(c->err().find("lost the connection to the server"), std::string::npos)
        << cluster.logs();
    EXPECT_NE(c->err().find("not reconnecting (--reconnects 0"), std::string::npos)
        << cluster.logs();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 15s) << cluster.logs();
}

}  // namespace
}  // namespace psgd
