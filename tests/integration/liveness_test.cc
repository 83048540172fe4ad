// The two ends of a worker's link agree on liveness (network/liveness.h): each side tells the other
// its --dead_after in the handshake, and each sends its heartbeats at least three times within the
// other's, whatever its own --heartbeat_interval says. Real processes on loopback, with one worker
// idle (waiting for a late second worker) well beyond the shorter --dead_after; the run must
// complete with no worker lost or redialling.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "tests/integration/blobs.h"
#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

// Two workers on a small CSV (no dataset package needed); the second client starts `late` after
// the first has joined, so the first sits idle on its link meanwhile. Returns when the run ended.
void run_with_a_late_joiner(Cluster& cluster, std::vector<std::string> server_flags,
                            std::vector<std::vector<std::string>> client_flags,
                            std::chrono::seconds late) {
  const std::string data = cluster.dir.file("blobs.csv");
  std::ofstream(data) << testing::blobs_csv(400, 5);
  std::vector<std::string> flags{"--dataset", "csv:" + data, "--label_column", "label",
                                 "--epochs",  "2",           "--batch_size",   "16"};
  flags.insert(flags.end(), server_flags.begin(), server_flags.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags, client_flags, 1));
  ASSERT_TRUE(wait_for_output(*cluster.server, "[1/2]")) << cluster.logs();
  std::this_thread::sleep_for(late);
  ASSERT_TRUE(cluster.server->running()) << cluster.logs();
  cluster.add_client();
  const auto code = cluster.server->wait(60s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, 0) << cluster.logs();
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << cluster.logs();
}

// The defect: a server with --dead_after 1.5 declared an idle worker with the default
// --heartbeat_interval 2 lost (its heartbeats came every 2 to 3.8 s). Now the worker learns the
// server's --dead_after, beats every 0.5 s instead and says so in one line; the first worker waits
// 4 s for the second (more than twice the server's --dead_after) and is never dropped.
TEST(Liveness, AServerDeadAfterShorterThanTheClientsHeartbeatLosesNoIdleWorker) {
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(run_with_a_late_joiner(
      cluster, {"--dead_after", "1.5", "--heartbeat_interval", "0.5"}, {}, 4s));
  EXPECT_EQ(summary_in(cluster.dir.file("run"))["status"], "completed") << cluster.logs();
  EXPECT_TRUE(summary_in(cluster.dir.file("run"))["lost_workers"].empty()) << cluster.logs();
  EXPECT_EQ(cluster.server->err().find("left before the job started"), std::string::npos)
      << cluster.logs();
  EXPECT_EQ(cluster.clients[0]->out().find("trying again"), std::string::npos) << cluster.logs();
  // The override is said, once, by the client whose flag it overrides.
  const std::string out = cluster.clients[0]->out();
  const auto said = out.find("--heartbeat_interval 2 shortened to 0.5 s");
  EXPECT_NE(said, std::string::npos) << cluster.logs();
  EXPECT_EQ(out.find("--heartbeat_interval 2 shortened", said + 1), std::string::npos) << out;
}

// The same by hand: a client started with a --heartbeat_interval (20 s) longer than the server's
// whole --dead_after (3 s) still beats often enough.
TEST(Liveness, AClientsLongHeartbeatIntervalIsShortenedToTheServersDeadAfter) {
  Cluster cluster;
  const std::vector<std::string> slow_beat{"--heartbeat_interval", "20"};
  ASSERT_NO_FATAL_FAILURE(
      run_with_a_late_joiner(cluster, {"--dead_after", "3"}, {slow_beat, slow_beat}, 5s));
  EXPECT_TRUE(summary_in(cluster.dir.file("run"))["lost_workers"].empty()) << cluster.logs();
  EXPECT_EQ(cluster.server->err().find("left before the job started"), std::string::npos)
      << cluster.logs();
  EXPECT_NE(cluster.clients[0]->out().find("--heartbeat_interval 20 shortened to 1 s"),
            std::string::npos)
      << cluster.logs();
}

// The reverse direction: a server whose heartbeats are rare (--heartbeat_interval 5, accepted
// with its --dead_after 20) and a worker that gives up on a server silent for 1.5 s (its
// --dead_after). The server learns the worker's --dead_after in its Hello and beats every 0.5 s on
// that link (saying so), so the waiting worker never takes it for dead and redials.
TEST(Liveness, AClientDeadAfterShorterThanTheServersHeartbeatDoesNotLoseItsServer) {
  Cluster cluster;
  const std::vector<std::string> impatient{"--dead_after", "1.5"};
  ASSERT_NO_FATAL_FAILURE(run_with_a_late_joiner(
      cluster, {"--heartbeat_interval", "5", "--dead_after", "20"}, {impatient}, 4s));
  EXPECT_EQ(summary_in(cluster.dir.file("run"))["status"], "completed") << cluster.logs();
  EXPECT_EQ(cluster.clients[0]->out().find("trying again"), std::string::npos) << cluster.logs();
  EXPECT_EQ(cluster.server->err().find("left before the job started"), std::string::npos)
      << cluster.logs();
  EXPECT_NE(cluster.server->out().find("heartbeats to it every 0.5 s"), std::string::npos)
      << cluster.logs();
}

}  // namespace
}  // namespace psgd
