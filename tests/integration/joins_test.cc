// Joining without a clock, and rejoining only one's own job (issue 21), against real processes on
// loopback: clients started by hand minutes apart, a worker whose data take long to load, a client
// at a port where another program answers, a worker that meets another job on its server's port,
// and a server killed and resumed while its clients redial, ten times in a row.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <thread>

#include "tests/integration/blobs.h"
#include "tests/integration/cluster.h"
#include "tests/integration/raw_peer.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::Process;
using testing::read_file;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

// Short liveness on both sides, so that a phase without heartbeats would drop a worker within
// seconds instead of passing unnoticed.
const std::vector<std::string> kQuickLiveness{"--heartbeat_interval", "0.3", "--dead_after", "2"};

// The README's recipe: start the server, then one client per worker, by hand. The second client
// comes 30 s after the first; the first waits (heartbeats both ways) and the job runs.
TEST(Joins, ASecondClientThirtySecondsAfterTheFirstIsWaitedFor) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  std::vector<std::string> flags{"--train_samples", "1000", "--test_samples", "300",
                                 "--epochs",        "1",    "--batch_size",   "32"};
  flags.insert(flags.end(), kQuickLiveness.begin(), kQuickLiveness.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags, {kQuickLiveness, kQuickLiveness}, 1));
  ASSERT_TRUE(wait_for_output(*cluster.server, "[1/2]")) << cluster.logs();
  std::this_thread::sleep_for(30s);
  ASSERT_TRUE(cluster.server->running()) << cluster.logs();
  ASSERT_TRUE(cluster.clients[0]->running()) << cluster.logs();
  cluster.add_client();
  auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  EXPECT_EQ(summary_in(cluster.dir.file("run"))["status"], "completed");
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << cluster.logs();
  EXPECT_EQ(cluster.server->err().find("left before the job started"), std::string::npos)
      << cluster.logs();
}

// A worker whose own copy of the data takes long to read (here a named pipe that the test fills
// only after 6 s, as a slow network disk would) keeps its link alive meanwhile: it loads on a
// thread of its own and the heartbeats go on.
TEST(Joins, AWorkerWhoseDataTakeLongToLoadIsNotDropped) {
  Cluster cluster;
  const std::string csv = testing::blobs_csv(600, 3);
  const std::string data = cluster.dir.file("blobs.csv"), pipe = cluster.dir.file("slow.csv");
  std::ofstream(data) << csv;
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  std::vector<std::string> flags{"--dataset", "csv:" + data, "--label_column", "label",
                                 "--epochs",  "2",           "--batch_size",   "16"};
  flags.insert(flags.end(), kQuickLiveness.begin(), kQuickLiveness.end());
  std::vector<std::string> slow{"--dataset", "csv:" + pipe};
  slow.insert(slow.end(), kQuickLiveness.begin(), kQuickLiveness.end());
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, flags, {kQuickLiveness, slow}));
  ASSERT_TRUE(wait_for_output(*cluster.server, "they are loading their data")) << cluster.logs();
  std::this_thread::sleep_for(6s);  // three times --dead_after
  ASSERT_TRUE(cluster.server->running()) << "dropped while loading\n" << cluster.logs();
  std::ofstream(pipe) << csv;  // opens when the client reads: the data arrive
  auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  EXPECT_EQ(summary_in(cluster.dir.file("run"))["status"], "completed");
  for (auto& c : cluster.clients)
    EXPECT_EQ(c->wait(30s).value_or(-1), 0) << cluster.logs();
}

// A server whose authentication slots are all held by idle connections closes any new one at
// once; a client retries (backoff and jitter) until the server has dropped the idle ones (after
// 10 s) and joins.
TEST(Joins, AClientLockedOutByIdleConnectionsJoinsOnceTheServerDropsThem) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(
      1,
      {"--train_samples", "1000", "--test_samples", "300", "--epochs", "1", "--batch_size", "32"},
      {}, 0));
  std::vector<std::unique_ptr<testing::RawPeer>> idle;
  for (int i = 0; i < 256; ++i)
    idle.push_back(std::make_unique<testing::RawPeer>(cluster.port));
  Process client(
      PSGD_CLIENT,
      {"--ip", "127.0.0.1", "--port", std::to_string(cluster.port), "--connect_timeout", "40"},
      cluster.dir.file("client.out"), cluster.dir.file("client.err"));
  auto code = cluster.server->wait(90s);
  ASSERT_TRUE(code.has_value()) << "server hung\n"
                                << cluster.logs() << client.out() << client.err();
  EXPECT_EQ(*code, 0) << cluster.logs() << client.out() << client.err();
  EXPECT_EQ(client.wait(30s).value_or(-1), 0) << client.out() << client.err();
  // It was turned away at least once and tried again.
  EXPECT_NE(client.out().find("trying again"), std::string::npos) << client.out();
  EXPECT_NE(cluster.server->err().find("connections are already authenticating"), std::string::npos)
      << cluster.logs();
}

// A client pointed at a port where another program answers (here: an HTTP-like reply, then the
// connection closes) says why once and then retries quietly until --connect_timeout (it printed
// the same "not a psgd peer" line at every attempt, two dozen in 30 s).
TEST(Joins, AClientAtANonPsgdServiceSaysWhyOnce) {
  const testing::LoopbackListener listener;
  ASSERT_TRUE(listener.ok());
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread service([&] {
    while (!stop) {
      pollfd p{listener.fd(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(listener.fd(), nullptr, nullptr);
      if (c < 0) continue;
      const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
      (void)!::write(c, reply, sizeof reply - 1);
      ::close(c);
      ++answered;
    }
  });
  testing::TempDir dir;
  Process client(
      PSGD_CLIENT,
      {"--ip", "127.0.0.1", "--port", std::to_string(listener.port()), "--connect_timeout", "4"},
      dir.file("client.out"), dir.file("client.err"));
  const auto code = client.wait(30s);
  stop = true;
  service.join();
  ASSERT_TRUE(code.has_value()) << "the client hung";
  EXPECT_EQ(*code, 1) << client.out() << client.err();
  EXPECT_GE(answered.load(), 2) << "it tried again";
  const std::string said = client.out() + client.err();
  std::size_t lines = 0;
  for (auto at = said.find("not a psgd peer"); at != std::string::npos;
       at = said.find("not a psgd peer", at + 1))
    ++lines;
  // Once when it is first seen, once more in the final line that gives up.
  EXPECT_LE(lines, 2u) << said;
  EXPECT_GE(lines, 1u) << said;
}

// A worker whose server died redials its port and finds another job there (the same flags, even:
// a job's identity is drawn when it starts, not taken from its flags). It says so in one line
// and exits; the other job gets no worker.
TEST(Joins, AWorkerMeetingAnotherJobOnItsPortSaysSoAndDoesNotJoinIt) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  const std::vector<std::string> flags{"--train_samples", "2000",      "--test_samples", "300",
                                       "--epochs",        "5",         "--batch_size",   "32",
                                       "--delay",         "fixed:0.05"};
  ASSERT_NO_FATAL_FAILURE(cluster.start(1, flags));
  ASSERT_TRUE(wait_for_output(*cluster.server, "initial test loss")) << cluster.logs();
  cluster.server->kill();
  std::vector<std::string> other{
      "--node_count", "1",         "--working_ports", std::to_string(cluster.port),
      "--bind",       "127.0.0.1", "--output",        cluster.dir.file("other")};
  other.insert(other.end(), flags.begin(), flags.end());
  Process another(PSGD_INIT_SERVER, other, cluster.dir.file("other.out"),
                  cluster.dir.file("other.err"));
  auto code = cluster.clients[0]->wait(60s);
  ASSERT_TRUE(code.has_value()) << "client hung\n" << cluster.logs() << another.out();
  EXPECT_EQ(*code, 1) << cluster.logs();
  const std::string err = cluster.clients[0]->err();
  EXPECT_NE(err.find("the server now runs another job"), std::string::npos) << err;
  EXPECT_NE(err.find("not joining it"), std::string::npos) << err;
  EXPECT_TRUE(another.running()) << another.out() << another.err();
  EXPECT_EQ(another.out().find("joined"), std::string::npos) << another.out();
  // SIGTERM while it waits for workers: status interrupted, exit 128 + 15.
  another.signal(SIGTERM);
  EXPECT_EQ(another.wait(30s).value_or(-1), 128 + SIGTERM) << another.err();
  EXPECT_EQ(summary_in(cluster.dir.file("other"))["status"], "interrupted");
}

// ssgd with checkpoints, killed (SIGKILL, by itself) after its k-th checkpoint and resumed on the
// same port while its two clients redial, ten times in a row with k = 1..10: every run completes
// with the parameters of the uninterrupted run, bit for bit.
TEST(Joins, AServerKilledAndResumedTenTimesWhileItsClientsRedialEndsBitIdentical) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  // 10 rounds per epoch, 2 epochs, a checkpoint after every round: killed at iterations 1..10.
  const std::vector<std::string> job{
      "--train_samples",    "640", "--test_samples", "200", "--epochs",   "2",
      "--batch_size",       "32",  "--seed",         "7",   "--momentum", "0.9",
      "--checkpoint_every", "1"};
  Cluster whole;
  ASSERT_NO_FATAL_FAILURE(whole.start(2, job));
  ASSERT_EQ(whole.server->wait(120s).value_or(-1), 0) << whole.logs();
  const auto expected = summary_in(whole.dir.file("run"));
  const std::string want = expected["parameters_sha256"];
  ASSERT_EQ(want.size(), 64u);
  for (int k = 1; k <= 10; ++k) {
    SCOPED_TRACE("killed after checkpoint " + std::to_string(k));
    auto crashing = job;
    crashing.insert(crashing.end(), {"--crash_after_checkpoints", std::to_string(k)});
    Cluster broken;
    ASSERT_NO_FATAL_FAILURE(broken.start(2, crashing));
    ASSERT_EQ(broken.server->wait(120s).value_or(-1), 128 + SIGKILL) << broken.logs();
    const std::string run = broken.dir.file("run");
    Process resumed(PSGD_INIT_SERVER,
                    {"--resume", run, "--working_ports", std::to_string(broken.port), "--bind",
                     "127.0.0.1", "--join_timeout", "60"},
                    broken.dir.file("resumed.out"), broken.dir.file("resumed.err"));
    const auto code = resumed.wait(120s);
    ASSERT_EQ(code.value_or(-1), 0) << resumed.out() << resumed.err() << broken.logs();
    for (auto& c : broken.clients)
      EXPECT_EQ(c->wait(30s).value_or(-1), 0) << broken.logs();
    const auto got = summary_in(run);
    EXPECT_EQ(got["status"], "completed");
    EXPECT_EQ(got["resumed"], true);
    EXPECT_EQ(got["parameters_sha256"], want) << resumed.out() << broken.logs();
    EXPECT_EQ(got["iterations"], expected["iterations"]);
  }
}

}  // namespace
}  // namespace psgd
