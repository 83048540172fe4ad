// Results come home (issue 18): each worker's log and per-batch trace land in the run directory at
// workers/<id>/log.txt and trace.csv, for a completed run and for one in which a worker is killed
// (completed without it, or failed), where the killed worker leaves what it had sent and
// summary.json says what is missing.
#include <gtest/gtest.h>

#include <csignal>
#include <sstream>

#include "tests/integration/cluster.h"

namespace psgd {
namespace {

using namespace std::chrono_literals;
using testing::Cluster;

constexpr const char* kHeader = "wall_s,epoch,batch,loss,samples,bytes_sent,bytes_received";

struct Row {
  double wall_s, loss;
  long long epoch, batch, samples, sent, received;
};

// The rows of a worker's trace.csv; fails the test on a malformed line.
std::vector<Row> trace_of(const std::string& run, int w) {
  std::istringstream in(testing::read_file(run + "/workers/" + std::to_string(w) + "/trace.csv"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, kHeader) << "worker " << w;
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    Row r{};
    char c[6];
    const int n = std::sscanf(line.c_str(), "%lf%c%lld%c%lld%c%lf%c%lld%c%lld%c%lld", &r.wall_s,
                              &c[0], &r.epoch, &c[1], &r.batch, &c[2], &r.loss, &c[3], &r.samples,
                              &c[4], &r.sent, &c[5], &r.received);
    EXPECT_EQ(n, 13) << line;
    rows.push_back(r);
  }
  return rows;
}

// Rows a researcher can trust: consecutive batches, time and bytes that never go back, epochs
// from 1 within the run's, finite losses, batch sizes within --batch_size.
void expect_sane(const std::vector<Row>& rows, int epochs, int batch_size, int w) {
  ASSERT_FALSE(rows.empty()) << "worker " << w;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    EXPECT_EQ(r.batch, static_cast<long long>(i)) << "worker " << w;
    EXPECT_GE(r.epoch, 1);
    EXPECT_LE(r.epoch, epochs + 1);
    EXPECT_TRUE(std::isfinite(r.loss) && r.loss > 0) << r.loss;
    EXPECT_GT(r.samples, 0);
    EXPECT_LE(r.samples, batch_size);
    if (i > 0) {
      EXPECT_GE(r.wall_s, rows[i - 1].wall_s);
      EXPECT_GE(r.epoch, rows[i - 1].epoch);
      EXPECT_GE(r.sent, rows[i - 1].sent);
      EXPECT_GE(r.received, rows[i - 1].received);
    }
  }
  // The worker received parameters and sent gradients before its last batch.
  EXPECT_GT(rows.back().sent, 0) << "worker " << w;
  EXPECT_GT(rows.back().received, 0) << "worker " << w;
}

TEST(Results, EveryWorkersLogAndTraceLandInTheRunDirectory) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(cluster.start(2, {"--train_samples", "2000", "--test_samples", "200",
                                            "--epochs", "2", "--batch_size", "50"}));
  const auto code = cluster.server->wait(240s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  ASSERT_EQ(*code, 0) << cluster.logs();
  const std::string run = cluster.dir.file("run");
  const auto summary = testing::summary_in(run);
  const long long iterations = summary["iterations"].get<long long>();
  ASSERT_EQ(summary["worker_files"].size(), 2u) << summary.dump(1);
  for (int w = 0; w < 2; ++w) {
    const auto& entry = summary["worker_files"][static_cast<std::size_t>(w)];
    EXPECT_EQ(entry["complete"], true) << entry.dump();
    EXPECT_FALSE(entry.contains("missing")) << entry.dump();
    const auto rows = trace_of(run, w);
    ASSERT_NO_FATAL_FAILURE(expect_sane(rows, 2, 50, w));
    // ssgd: one batch per worker per iteration, every one of them in the trace.
    EXPECT_EQ(static_cast<long long>(rows.size()), iterations) << "worker " << w;
    EXPECT_EQ(entry["trace_rows"].get<long long>(), iterations);
    EXPECT_EQ(rows.back().epoch, 2);
    // The log holds what the client printed, up to the end of the run.
    const std::string log = testing::read_file(run + "/workers/" + std::to_string(w) + "/log.txt");
    EXPECT_NE(log.find("client[" + std::to_string(w) + "]: worker " + std::to_string(w) + " of 2"),
              std::string::npos)
        << log;
  }
}

// --simulate keeps the same contract: the simulated workers' traces, in virtual seconds.
TEST(Results, SimulatedWorkersTracesLandInTheSamePlace) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  testing::TempDir dir;
  const std::string run = dir.file("run");
  testing::Process server(
      PSGD_INIT_SERVER,
      {"--simulate", "--node_count", "3", "--train_samples", "1500", "--test_samples", "200",
       "--epochs", "2", "--batch_size", "50", "--output", run},
      dir.file("out"), dir.file("err"));
  const auto code = server.wait(240s);
  ASSERT_TRUE(code.has_value()) << "init_server --simulate hung";
  ASSERT_EQ(*code, 0) << server.out() << server.err();
  const auto summary = testing::summary_in(run);
  const long long iterations = summary["iterations"].get<long long>();
  ASSERT_EQ(summary["worker_files"].size(), 3u) << summary.dump(1);
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(summary["worker_files"][static_cast<std::size_t>(w)]["complete"], true);
    const auto rows = trace_of(run, w);
    ASSERT_NO_FATAL_FAILURE(expect_sane(rows, 2, 50, w));
    EXPECT_EQ(static_cast<long long>(rows.size()), iterations) << "worker " << w;
    // Virtual time goes forward with the batches.
    EXPECT_GT(rows.back().wall_s, rows.front().wall_s);
    const std::string log = testing::read_file(run + "/workers/" + std::to_string(w) + "/log.txt");
    EXPECT_NE(log.find("simulated worker " + std::to_string(w) + " of 3"), std::string::npos)
        << log;
  }
}

struct KillCase {
  std::string psgd;
  bool completes;
};

void PrintTo(const KillCase& c, std::ostream* os) {
  *os << c.psgd;
}

class ResultsWithAKilledWorker : public ::testing::TestWithParam<KillCase> {};

TEST_P(ResultsWithAKilledWorker, KeepTheOthersFilesAndSayWhatIsMissing) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const KillCase& c = GetParam();
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(3, {"--train_samples", "3000", "--test_samples", "300", "--epochs", "2",
                        "--batch_size", "32", "--delay", "fixed:0.05", "--psgd", c.psgd,
                        "--dead_after", "3", "--heartbeat_interval", "0.5"}));
  // Training under way for a few seconds: every worker has sent pieces of its trace.
  const auto start = std::chrono::steady_clock::now();
  auto ready = [&] {
    const std::string out = cluster.server->out();
    int n = 0;
    for (auto at = out.find(" ready: "); at != std::string::npos; at = out.find(" ready: ", at + 1))
      ++n;
    return n;
  };
  while (ready() < 3) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 120s) << cluster.logs();
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(3s);
  const std::string run = cluster.dir.file("run");
  const auto victim_pid = cluster.clients[2]->pid();
  cluster.clients[2]->signal(SIGKILL);
  const auto code = cluster.server->wait(180s);
  ASSERT_TRUE(code.has_value()) << "server hung\n" << cluster.logs();
  EXPECT_EQ(*code, c.completes ? 0 : 1) << cluster.logs();
  const auto config = nlohmann::json::parse(testing::read_file(run + "/config.json"));
  int victim = -1;
  for (const auto& w : config["workers"])
    if (w["pid"].get<int>() == victim_pid) victim = w["worker"].get<int>();
  ASSERT_GE(victim, 0) << config["workers"].dump();
  const auto summary = testing::summary_in(run);
  ASSERT_EQ(summary["worker_files"].size(), 3u) << summary.dump(1);
  for (int w = 0; w < 3; ++w) {
    const auto& entry = summary["worker_files"][static_cast<std::size_t>(w)];
    const auto rows = trace_of(run, w);
    ASSERT_NO_FATAL_FAILURE(expect_sane(rows, 2, 32, w));
    if (w == victim) {
      // What it sent before it died, and a summary that says the rest is missing and why.
      EXPECT_EQ(entry["complete"], false) << entry.dump();
      const std::string missing = entry["missing"];
      EXPECT_NE(missing.find("last piece never arrived"), std::string::npos) << missing;
      EXPECT_NE(missing.find("worker " + std::to_string(victim) + " was lost"), std::string::npos)
          << missing;
    } else {
      EXPECT_EQ(entry["complete"], true) << entry.dump() << cluster.logs();
      EXPECT_FALSE(entry.contains("missing")) << entry.dump();
    }
  }
  EXPECT_NE(
      cluster.server->err().find("worker " + std::to_string(victim) + "'s log and trace (workers/" +
                                 std::to_string(victim) + "/)"),
      std::string::npos)
      << cluster.server->err();
}

INSTANTIATE_TEST_SUITE_P(Results, ResultsWithAKilledWorker,
                         ::testing::Values(KillCase{"asgd", true}, KillCase{"ssgd", false}),
                         [](const auto& info) { return info.param.psgd; });

}  // namespace
}  // namespace psgd
