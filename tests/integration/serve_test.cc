// Resident workers (issue 18): clients started once with --serve take job after job. Two of them
// run two authenticated init_server jobs in a row on one port, then SIGTERM stops them cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;

// A port nothing listens on now (the system's choice for a socket bound and closed at once).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// n resident workers (client --serve, --serve_timeout 300) dialling `port` on loopback, with the
// extra flags given; their output goes to clientI.out / .err in `dir`.
std::vector<std::unique_ptr<testing::Process>> resident_clients(
    const testing::TempDir& dir, int port, int n, const std::vector<std::string>& extra = {}) {
  std::vector<std::unique_ptr<testing::Process>> clients;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args{"--ip",    "127.0.0.1",       "--port", std::to_string(port),
                                  "--serve", "--serve_timeout", "300"};
    args.insert(args.end(), extra.begin(), extra.end());
    clients.push_back(std::make_unique<testing::Process>(
        PSGD_CLIENT, args, dir.file("client" + std::to_string(i) + ".out"),
        dir.file("client" + std::to_string(i) + ".err")));
  }
  return clients;
}

TEST(Serve, ResidentWorkersRunTwoJobsInARowThenStopOnSigterm) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  testing::TempDir dir;
  std::ofstream(dir.file("secret")) << "resident workers' secret\n";
  ::chmod(dir.file("secret").c_str(), 0600);
  const int port = free_port();
  ASSERT_GT(port, 0);
  auto clients = resident_clients(dir, port, 2, {"--passphrase_file", dir.file("secret")});
  auto logs = [&] {
    std::string s;
    for (auto& c : clients)
      s += "--- client\n" + c->out() + c->err();
    return s;
  };
  std::vector<std::string> job_ids;
  for (int job = 1; job <= 2; ++job) {
    const std::string run = dir.file("run" + std::to_string(job));
    testing::Process server(
        PSGD_INIT_SERVER, {"--node_count",   "2",         "--working_ports",   std::to_string(port),
                           "--bind",         "127.0.0.1", "--passphrase_file", dir.file("secret"),
                           "--output",       run,         "--train_samples",   "1000",
                           "--test_samples", "200",       "--epochs",          "1",
                           "--batch_size",   "50",        "--join_timeout",    "120"},
        dir.file("server.out"), dir.file("server.err"));
    const auto code = server.wait(240s);
    ASSERT_TRUE(code.has_value()) << "server hung\n" << server.out() << server.err() << logs();
    ASSERT_EQ(*code, 0) << server.out() << server.err() << logs();
    const auto summary = testing::summary_in(run);
    EXPECT_EQ(summary["status"], "completed");
    job_ids.push_back(summary["job_id"]);
    // The resident workers' results came home for this job too.
    for (const auto& entry : summary["worker_files"])
      EXPECT_EQ(entry["complete"], true) << entry.dump();
    // Both clients are still up, waiting for the next job.
    for (auto& c : clients)
      ASSERT_TRUE(c->running()) << logs();
    for (auto& c : clients)
      ASSERT_TRUE(
          testing::wait_for_output(*c, "job " + std::to_string(job) + " ended (exit 0)", 60s))
          << logs();
  }
  EXPECT_NE(job_ids[0], job_ids[1]);
  for (auto& c : clients)
    c->signal(SIGTERM);
  for (auto& c : clients) {
    const auto code = c->wait(30s);
    ASSERT_TRUE(code.has_value()) << "a resident worker ignored SIGTERM\n" << logs();
    EXPECT_EQ(*code, 0) << logs();
    EXPECT_NE(c->out().find("stopped by a signal after 2 job(s)"), std::string::npos) << logs();
  }
}

// A resident worker refused again and again (here: a server with another passphrase) says why
// once, then that it retries quietly, instead of a line a second for as long as it is refused;
// it still stops on SIGTERM at once.
TEST(Serve, ARepeatedRefusalIsPrintedOnceAndRetriedWithBackoff) {
  testing::TempDir dir;
  std::ofstream(dir.file("server_secret")) << "the lab's secret\n";
  std::ofstream(dir.file("worker_secret")) << "an old secret\n";
  ::chmod(dir.file("server_secret").c_str(), 0600);
  ::chmod(dir.file("worker_secret").c_str(), 0600);
  const int port = free_port();
  ASSERT_GT(port, 0);
  testing::Process server(
      PSGD_INIT_SERVER,
      {"--node_count", "1", "--working_ports", std::to_string(port), "--bind", "127.0.0.1",
       "--passphrase_file", dir.file("server_secret"), "--output", dir.file("run"),
       "--train_samples", "200", "--test_samples", "100", "--join_timeout", "60"},
      dir.file("server.out"), dir.file("server.err"));
  testing::Process worker(PSGD_CLIENT,
                          {"--ip", "127.0.0.1", "--port", std::to_string(port), "--serve",
                           "--passphrase_file", dir.file("worker_secret")},
                          dir.file("worker.out"), dir.file("worker.err"));
  // Attempts at about 0, 1, 3, 7 and 12 s: four refusals and more within 14 s.
  ASSERT_TRUE(testing::wait_for_output(worker, "retrying at most 5 s apart", 30s))
      << worker.out() << worker.err();
  std::this_thread::sleep_for(12s);
  ASSERT_TRUE(worker.running()) << worker.out() << worker.err();
  const std::string err = worker.err();
  const std::string out = worker.out();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2) << err;  // the refusal, then the note
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;  // waiting for a job (once)
  EXPECT_NE(server.out().find("passphrase"), std::string::npos) << server.out() << server.err();
  worker.signal(SIGTERM);
  const auto code = worker.wait(30s);
  ASSERT_TRUE(code.has_value()) << "the resident worker ignored SIGTERM";
  EXPECT_EQ(*code, 0);
  server.signal(SIGTERM);
  EXPECT_TRUE(server.wait(30s).has_value());
}

// SIGTERM to a resident worker during a job: it leaves that job as a one-job client does (the
// server hears why and carries on without it) and exits with 128 + 15; the other resident worker
// outlives the job and stops with 0 on its own SIGTERM between jobs.
TEST(Serve, ASignalDuringAJobLeavesItAndExitsWithTheSignalsCode) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  testing::TempDir dir;
  const int port = free_port();
  ASSERT_GT(port, 0);
  auto clients = resident_clients(dir, port, 2);
  const std::string run = dir.file("run");
  // Long enough (hundreds of epochs) that the signals below come during training; asgd carries
  // on without a worker that left.
  testing::Process server(PSGD_INIT_SERVER,
                          {"--node_count",    "2",         "--working_ports", std::to_string(port),
                           "--bind",          "127.0.0.1", "--output",        run,
                           "--train_samples", "2000",      "--test_samples",  "200",
                           "--epochs",        "500",       "--batch_size",    "50",
                           "--join_timeout",  "120",       "--psgd",          "asgd"},
                          dir.file("server.out"), dir.file("server.err"));
  auto logs = [&] {
    std::string s = "--- server\n" + server.out() + server.err();
    for (auto& c : clients)
      s += "--- client\n" + c->out() + c->err();
    return s;
  };
  for (auto& c : clients)
    ASSERT_TRUE(testing::wait_for_output(*c, " of 2: ", 120s)) << logs();
  clients[1]->signal(SIGTERM);
  const auto left = clients[1]->wait(30s);
  ASSERT_TRUE(left.has_value()) << "a resident worker ignored SIGTERM during a job\n" << logs();
  EXPECT_EQ(*left, 128 + SIGTERM) << logs();
  EXPECT_EQ(clients[1]->out().find("job 1 ended"), std::string::npos) << logs();
  // The other worker trains on; then the server is stopped and its job ends for that worker.
  ASSERT_TRUE(clients[0]->running()) << logs();
  server.signal(SIGTERM);
  const auto code = server.wait(60s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << logs();
  const auto summary = testing::summary_in(run);
  EXPECT_EQ(summary["status"], "interrupted") << summary.dump(1);
  bool lost = false;
  for (const auto& e : summary["events"]) {
    if (e["event"] == "worker_lost") {
      lost = true;
      EXPECT_EQ(e["carried_on"], true) << e.dump();
      EXPECT_NE(e["why"].get<std::string>().find("SIGTERM"), std::string::npos) << e.dump();
    }
  }
  EXPECT_TRUE(lost) << summary.dump(1);
  ASSERT_TRUE(testing::wait_for_output(*clients[0], "job 1 ended", 60s)) << logs();
  ASSERT_TRUE(clients[0]->running()) << logs();
  clients[0]->signal(SIGTERM);
  const auto stayed = clients[0]->wait(30s);
  ASSERT_TRUE(stayed.has_value()) << logs();
  EXPECT_EQ(*stayed, 0) << logs();
  EXPECT_NE(clients[0]->out().find("stopped by a signal after 1 job(s)"), std::string::npos)
      << logs();
}

// --serve_timeout is a resident worker's wait: without --serve it is refused in one line.
TEST(Serve, ServeTimeoutWithoutServeIsRefused) {
  testing::TempDir dir;
  testing::Process client(PSGD_CLIENT, {"--serve_timeout", "5"}, dir.file("out"), dir.file("err"));
  const auto code = client.wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  const std::string err = client.err();
  EXPECT_NE(err.find("--serve_timeout is the wait between jobs"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace
}  // namespace psgd
