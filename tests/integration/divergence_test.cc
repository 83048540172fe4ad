// A run whose training diverges (experiments/divergence.h), through the real drivers in this
// process (tests/integration/in_process.h): the README's example, features ~100 and not
// normalised, whose losses become NaN in its third epoch, stops at the first non-finite round's
// loss with status "diverged: ..." and exit code 1, over --simulate under every strategy and over
// TCP; --on_divergence continue trains every epoch as before; the same data normalised completes
// with no divergence recorded.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/in_process.h"

namespace psgd {
namespace {

using testing::read_file;
using testing::read_json;
using testing::run_sim;
using testing::run_tcp;
using testing::TempDir;

// Two classes around -100 and +100 in three features, the label between them (as in the README).
std::string blobs_csv(int n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> unit(0, 1);
  std::ostringstream out;
  out << "a,label,b,c\n";
  for (int i = 0; i < n; ++i) {
    const int y = i % 2;
    const double m = y == 0 ? -1 : 1;
    out << 100 * (m + unit(gen)) << "," << y << "," << 100 * (m + unit(gen)) << ","
        << 100 * (m + unit(gen)) << "\n";
  }
  return out.str();
}

std::vector<std::string> job(const TempDir& dir, std::vector<std::string> extra) {
  std::ofstream(dir.file("train.csv")) << blobs_csv(800, 1);
  std::ofstream(dir.file("test.csv")) << blobs_csv(200, 2);
  std::vector<std::string> flags{
      "--epochs",       "5",
      "--batch_size",   "16",
      "--threads",      "1",
      "--dataset",      "csv:train=" + dir.file("train.csv") + ",test=" + dir.file("test.csv"),
      "--label_column", "label",
      "--join_timeout", "60",
      "--io_timeout",   "30"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

int data_rows(const std::string& csv) {
  std::istringstream in(csv);
  std::string line;
  int rows = -1;  // the header
  while (std::getline(in, line))
    ++rows;
  return rows;
}

// The defining property of a stop: the run ended with the update whose loss was not finite (a
// round's training loss, or the test loss of the epoch-end evaluation that update led to, which
// --simulate runs before the next update).
void expect_stopped_at_divergence(const nlohmann::json& s, const std::string& run, int epochs) {
  ASSERT_TRUE(s["divergence"].is_object()) << s.dump(1);
  EXPECT_EQ(s["status"].get<std::string>().rfind("diverged: ", 0), 0u) << s["status"];
  EXPECT_FALSE(s["ok"].get<bool>());
  const auto& d = s["divergence"];
  EXPECT_EQ(s["iterations"], d["iteration"]) << s.dump(1);
  EXPECT_LE(d["epoch"].get<int>(), epochs);
  // metrics.csv keeps what was recorded: the initial row and every epoch before the divergence,
  // and the evaluation that showed it.
  const bool in_training = d["what"] == "training loss";
  if (in_training) {
    EXPECT_LT(d["last_finite_iteration"].get<std::int64_t>(), d["iteration"].get<std::int64_t>());
  } else {
    EXPECT_EQ(d["what"], "test loss") << d.dump();
  }
  EXPECT_EQ(data_rows(read_file(run + "/metrics.csv")),
            d["epoch"].get<int>() + (in_training ? 0 : 1))
      << run;
  bool event = false;
  for (const auto& e : s["events"])
    event = event || e["event"] == "diverged";
  EXPECT_TRUE(event) << s["events"].dump();
}

struct StrategyCase {
  std::string name;
  std::vector<std::string> flags;
};
void PrintTo(const StrategyCase& c, std::ostream* os) {
  *os << c.name;
}

class DivergenceSim : public ::testing::TestWithParam<StrategyCase> {};

TEST_P(DivergenceSim, StopsAtTheFirstNonFiniteLoss) {
  TempDir dir;
  const int code = run_sim(job(dir, GetParam().flags), dir);
  EXPECT_EQ(code, 1);
  const auto s = read_json(dir.file("sim") + "/summary.json");
  expect_stopped_at_divergence(s, dir.file("sim"), 5);
  EXPECT_LT(s["epochs"].get<int>(), 5) << "burned the remaining epochs";
}

INSTANTIATE_TEST_SUITE_P(
    Divergence, DivergenceSim,
    ::testing::Values(
        StrategyCase{"ssgd", {"--node_count", "2"}},
        StrategyCase{"asgd", {"--node_count", "2", "--psgd", "asgd"}},
        StrategyCase{"ssp", {"--node_count", "2", "--psgd", "ssp", "--staleness", "1"}},
        StrategyCase{"local_sgd",
                     {"--node_count", "2", "--psgd", "local_sgd", "--sync_period", "2"}},
        StrategyCase{"allreduce", {"--node_count", "2", "--psgd", "allreduce"}},
        StrategyCase{"broadcast", {"--node_count", "2", "--psgd", "broadcast"}},
        StrategyCase{"ssgd_qsgd", {"--node_count", "2", "--codec", "qsgd"}},
        StrategyCase{
            "gc",
            {"--node_count", "4", "--codec", "gc", "--redundancy", "2", "--learn_rate", "0.5"}},
        StrategyCase{"ccdc",
                     {"--node_count", "4", "--psgd", "broadcast", "--codec", "ccdc", "--redundancy",
                      "2", "--learn_rate", "0.5"}}),
    [](const auto& info) { return info.param.name; });

// --on_divergence continue: today's behaviour (every epoch, "completed", exit 0), with where it
// began in summary.json: the same iteration at which the stopping run ended.
TEST(Divergence, ContinueTrainsEveryEpochAndRecordsWhereItBegan) {
  TempDir stop_dir, go_dir;
  ASSERT_EQ(run_sim(job(stop_dir, {"--node_count", "2"}), stop_dir), 1);
  ASSERT_EQ(run_sim(job(go_dir, {"--node_count", "2", "--on_divergence", "continue"}), go_dir), 0);
  const auto stopped = read_json(stop_dir.file("sim") + "/summary.json");
  const auto s = read_json(go_dir.file("sim") + "/summary.json");
  EXPECT_EQ(s["status"], "completed");
  EXPECT_EQ(s["epochs"], 5);
  EXPECT_EQ(data_rows(read_file(go_dir.file("sim") + "/metrics.csv")), 6);
  ASSERT_TRUE(s["divergence"].is_object()) << s.dump(1);
  EXPECT_EQ(s["divergence"]["iteration"], stopped["divergence"]["iteration"]);
  EXPECT_EQ(s["divergence"], stopped["divergence"]);
}

// A normal run: the same data normalised trains to the end with nothing recorded.
TEST(Divergence, ANormalRunIsUnaffected) {
  TempDir dir;
  ASSERT_EQ(run_sim(job(dir, {"--node_count", "2", "--normalize", "zscore"}), dir), 0);
  const auto s = read_json(dir.file("sim") + "/summary.json");
  EXPECT_EQ(s["status"], "completed");
  ASSERT_TRUE(s.contains("divergence")) << s.dump(1);
  EXPECT_TRUE(s["divergence"].is_null()) << s.dump(1);
  EXPECT_GT(s["final_test_accuracy"].get<double>(), 0.9);
}

// Over TCP (server and clients as threads of this process): the server stops at the first
// non-finite round and tells the workers, which exit 1; the same divergence as --simulate's
// (a parameter server, the asynchronous one, and the peer-to-peer ring, whose workers report).
class DivergenceTcp : public ::testing::TestWithParam<StrategyCase> {};

TEST_P(DivergenceTcp, StopsAndTellsTheWorkers) {
  TempDir dir;
  const int code = run_tcp(job(dir, GetParam().flags), dir, 2, /*client_code=*/1);
  EXPECT_EQ(code, 1);
  const auto s = read_json(dir.file("tcp") + "/summary.json");
  ASSERT_TRUE(s["divergence"].is_object()) << s.dump(1);
  EXPECT_EQ(s["status"].get<std::string>().rfind("diverged: ", 0), 0u) << s["status"];
  EXPECT_LT(s["epochs"].get<int>(), 5) << "burned the remaining epochs";
  // The workers' logs and traces came home, up to the divergence.
  for (const auto& f : s["worker_files"])
    EXPECT_TRUE(f["complete"].get<bool>()) << f.dump();
  // The updates in flight when it was seen may still have been applied (asgd), never more; a
  // divergence only the epoch-end evaluation shows (local_sgd's test loss after iteration 75) is
  // seen when that evaluation, which runs beside training, ends, unless a later round's training
  // loss shows it first: either way within the next epoch.
  const auto at = s["divergence"]["iteration"].get<std::int64_t>();
  const bool in_training = s["divergence"]["what"] == "training loss";
  EXPECT_GE(s["iterations"].get<std::int64_t>(), at);
  EXPECT_LE(s["iterations"].get<std::int64_t>(), at + (in_training ? 2 : 25));
  if (GetParam().name == "asgd") return;  // the order of its updates is the machine's
  TempDir sim_dir;
  ASSERT_EQ(run_sim(job(sim_dir, GetParam().flags), sim_dir), 1);
  const auto sim = read_json(sim_dir.file("sim") + "/summary.json")["divergence"];
  if (sim["what"] == "training loss") {  // deterministic: the same as the simulated run's
    EXPECT_EQ(s["divergence"], sim);
    EXPECT_EQ(s["iterations"], at);
  } else {  // the background evaluation can only see it as early as --simulate does
    EXPECT_GE(at, sim["iteration"].get<std::int64_t>());
    EXPECT_LE(at, sim["iteration"].get<std::int64_t>() + 25);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Divergence, DivergenceTcp,
    ::testing::Values(StrategyCase{"ssgd", {"--node_count", "2"}},
                      StrategyCase{"asgd", {"--node_count", "2", "--psgd", "asgd"}},
                      StrategyCase{"allreduce", {"--node_count", "2", "--psgd", "allreduce"}},
                      StrategyCase{
                          "local_sgd",
                          {"--node_count", "2", "--psgd", "local_sgd", "--sync_period", "2"}}),
    [](const auto& info) { return info.param.name; });

TEST(Divergence, OverTcpContinueCompletes) {
  TempDir dir;
  EXPECT_EQ(run_tcp(job(dir, {"--node_count", "2", "--on_divergence", "continue"}), dir, 2), 0);
  const auto s = read_json(dir.file("tcp") + "/summary.json");
  EXPECT_EQ(s["status"], "completed");
  EXPECT_EQ(s["epochs"], 5);
  EXPECT_TRUE(s["divergence"].is_object()) << s.dump(1);
}

}  // namespace
}  // namespace psgd
