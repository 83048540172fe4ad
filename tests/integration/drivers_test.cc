// One job, every driver: the same flags run by init_server with real clients over loopback TCP
// and by init_server --simulate make the same config.json (apart from host and timing fields),
// and for ssgd with a modelled compute time, bit-identical final parameters. The whole real run
// happens in this process: the server and its clients are threads (run_server, run_client), so
// the test also shows that the drivers are parts a test can run without processes. The clients
// get nothing but the port: with --model script:FILE (a researcher's TorchScript model with
// BatchNorm and Dropout, written by tests/python/make_models.py) the file reaches them with the
// job.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "experiments/cli.h"
#include "experiments/client/client.h"
#include "experiments/server/server.h"
#include "experiments/simulate.h"
#include "tests/integration/blobs.h"
#include "tests/integration/in_process.h"
#include "tests/integration/process.h"
#include "tests/script_models.h"

namespace psgd {
namespace {

using testing::read_json;
using testing::run_sim;
using testing::run_tcp;
using testing::TempDir;

void write_blobs(const std::string& path, int n, std::uint32_t seed) {
  std::ofstream(path) << testing::blobs_csv(n, seed);
}

// config.json without what legitimately differs between two runs of one job: where and when it
// ran (provenance, the run directory), who the workers were (host, pid), and the simulator's
// own section.
nlohmann::json comparable(nlohmann::json config) {
  config.erase("provenance");
  config.erase("simulation");
  config["job"].erase("output");
  for (auto& w : config["workers"]) {
    w.erase("host");
    w.erase("pid");
  }
  return config;
}

struct DriverCase {
  const char* name;
  std::vector<std::string> flags;
  double min_accuracy = 0;  // both runs' final test accuracy at least this (0: not checked)
  friend void PrintTo(const DriverCase& c, std::ostream* os) { *os << c.name; }
};

class OneJob : public ::testing::TestWithParam<DriverCase> {};

TEST_P(OneJob, SameConfigInTheRealAndTheSimulatedRun) {
  TempDir dir;
  write_blobs(dir.file("train.csv"), 600, 1);
  write_blobs(dir.file("test.csv"), 200, 2);
  std::vector<std::string> flags{
      "--node_count",       "2",
      "--epochs",           "1",
      "--batch_size",       "32",
      "--threads",          "1",
      "--dataset",          "csv:train=" + dir.file("train.csv") + ",test=" + dir.file("test.csv"),
      "--label_column",     "label",
      "--normalize",        "zscore",
      "--validation_split", "0.1",
      "--learn_rate",       "0.1",
      "--join_timeout",     "60",
      "--io_timeout",       "30"};
  flags.insert(flags.end(), GetParam().flags.begin(), GetParam().flags.end());
  std::string script_file;  // --model script:NAME names a file of make_models.py's
  for (auto& f : flags) {
    if (!f.starts_with("script:")) continue;
    PSGD_SCRIPT_MODELS_OR_SKIP(models);
    script_file = models + "/" + f.substr(7);
    f = "script:" + script_file;
  }
  ASSERT_EQ(run_tcp(flags, dir, 2), 0);
  ASSERT_EQ(run_sim(flags, dir), 0);
  const auto tcp = read_json(dir.file("tcp") + "/config.json");
  const auto sim = read_json(dir.file("sim") + "/config.json");
  EXPECT_EQ(comparable(tcp), comparable(sim)) << "TCP:\n"
                                              << comparable(tcp).dump(1) << "\nsimulated:\n"
                                              << comparable(sim).dump(1);
  // What the issue found missing in the simulated run: the normaliser, the hold-out and the
  // label column, all in effect.
  EXPECT_EQ(sim["data"]["normalizer"]["kind"], "zscore");
  EXPECT_EQ(sim["data"]["validation_samples"], 60);
  EXPECT_EQ(sim["data"]["classes"], 2);
  if (!script_file.empty()) {
    EXPECT_EQ(sim["model"]["file"], script_file);
    EXPECT_EQ(sim["model"]["sha256"].get<std::string>().size(), 64u) << sim["model"].dump();
  }
  const auto tcp_summary = read_json(dir.file("tcp") + "/summary.json");
  const auto sim_summary = read_json(dir.file("sim") + "/summary.json");
  EXPECT_EQ(tcp_summary["status"], "completed");
  EXPECT_EQ(sim_summary["status"], "completed");
  EXPECT_EQ(tcp_summary["iterations"], sim_summary["iterations"]);
  EXPECT_GE(tcp_summary["final_test_accuracy"].get<double>(), GetParam().min_accuracy);
  EXPECT_GE(sim_summary["final_test_accuracy"].get<double>(), GetParam().min_accuracy);
  EXPECT_FALSE(sim_summary["final_validation_accuracy"].is_null()) << sim_summary.dump(1);
  if (tcp["job"]["psgd"] == "ssgd" || tcp["job"]["psgd"] == "local_sgd" ||
      tcp["job"]["psgd"] == "allreduce") {
    // (Compressed allreduce too: fp16 and PowerSGD are deterministic, and the simulated ring
    // carries the same fp16 chunks and PowerSGD factors, so the peer bytes agree as well.)
    if (tcp["job"]["psgd"] == "allreduce") {
      EXPECT_GT(sim_summary["peer_bytes_per_worker"].get<double>(), 0) << sim_summary.dump(1);
      EXPECT_EQ(tcp_summary["peer_bytes_per_worker"], sim_summary["peer_bytes_per_worker"]);
    }
    // Deterministic strategies: every gradient is computed on the same parameters from the same
    // batch in both drivers and summed in worker order.
    EXPECT_EQ(tcp_summary["parameters_sha256"], sim_summary["parameters_sha256"]);
    EXPECT_EQ(tcp_summary["bytes_up"], sim_summary["bytes_up"]);
    EXPECT_EQ(tcp_summary["bytes_down"], sim_summary["bytes_down"]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Drivers, OneJob,
    ::testing::Values(
        DriverCase{"ssgd", {"--psgd", "ssgd", "--delay", "fixed:0.001"}},
        // One step of delay learns the blobs as well, and is the same in both drivers.
        DriverCase{"ssgd_overlap",
                   {"--psgd", "ssgd", "--overlap", "--momentum", "0", "--delay", "fixed:0.001"},
                   0.9},
        DriverCase{"asgd", {"--psgd", "asgd"}},
        DriverCase{"local_sgd", {"--psgd", "local_sgd", "--sync_period", "2"}},
        DriverCase{"allreduce", {"--psgd", "allreduce"}},
        DriverCase{"allreduce_fp16", {"--psgd", "allreduce", "--codec", "fp16"}},
        // Bucketed: each layer of the MLP a bucket of its own (0.0001 MB = 100 bytes).
        DriverCase{"allreduce_overlap",
                   {"--psgd", "allreduce", "--overlap", "--bucket_mb", "0.0001"}},
        DriverCase{
            "allreduce_overlap_fp16",
            {"--psgd", "allreduce", "--codec", "fp16", "--overlap", "--bucket_mb", "0.0001"}},
        DriverCase{"allreduce_powersgd",
                   {"--psgd", "allreduce", "--codec", "powersgd", "--codec_rank", "1"}},
        DriverCase{"ssgd_script", {"--psgd", "ssgd", "--model", "script:blobs_bn.pt"}},
        DriverCase{"allreduce_script", {"--psgd", "allreduce", "--model", "script:blobs_bn.pt"}},
        // A TorchScript model cannot pause its backward pass: one bucket, computed in one piece.
        DriverCase{"allreduce_overlap_script",
                   {"--psgd", "allreduce", "--overlap", "--model", "script:blobs_bn.pt"}},
        DriverCase{"ssgd_noniid",
                   {"--psgd", "ssgd", "--block_assignment", "non-iid", "--shards_per_node", "2"}},
        DriverCase{"ssgd_contiguous", {"--psgd", "ssgd", "--block_assignment", "contiguous"}}),
    [](const auto& info) { return std::string(info.param.name); });

// A real run over loopback TCP (server and `nodes` clients as threads) of a small blobs job with
// momentum, plus `extra` flags; returns summary.json's parameters_sha256 after checking that the
// run completed and learned.
std::string blobs_parameters_hash(int nodes, const std::vector<std::string>& extra) {
  TempDir dir;
  write_blobs(dir.file("train.csv"), 200 * nodes, 1);
  write_blobs(dir.file("test.csv"), 200, 2);
  std::vector<std::string> flags{
      "--node_count",   std::to_string(nodes),
      "--epochs",       "2",
      "--batch_size",   "16",
      "--threads",      "1",
      "--dataset",      "csv:train=" + dir.file("train.csv") + ",test=" + dir.file("test.csv"),
      "--label_column", "label",
      "--normalize",    "zscore",
      "--learn_rate",   "0.1",
      "--momentum",     "0.9",
      "--join_timeout", "60",
      "--io_timeout",   "30"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  if (run_tcp(flags, dir, nodes) != 0) {
    ADD_FAILURE() << "the run with " << ::testing::PrintToString(extra) << " failed";
    return "run failed";
  }
  const auto summary = read_json(dir.file("tcp") + "/summary.json");
  EXPECT_EQ(summary["status"], "completed") << summary.dump(1);
  EXPECT_GT(summary["final_test_accuracy"].get<double>(), 0.9) << summary.dump(1);
  const std::string hash = summary["parameters_sha256"].get<std::string>();
  EXPECT_EQ(hash.size(), 64u);
  return hash;
}

// allreduce --overlap is DDP's overlap with no delay: over real TCP links, three clients, its
// final parameters are those of allreduce without it, bit for bit (the hash of summary.json),
// with plain and fp16 sums, with momentum: at the default buckets (this MLP's last layer holds a
// third of its gradient, so it is a bucket of its own) and with a tiny --bucket_mb.
TEST(AllreduceOverlapOverTcp, SameParametersAsWithoutOverlap) {
  for (const char* codec : {"plain", "fp16"}) {
    SCOPED_TRACE(codec);
    const std::vector<std::string> job{"--psgd", "allreduce", "--codec", codec};
    const std::string without = blobs_parameters_hash(3, job);
    std::vector<std::string> overlapped = job;
    overlapped.push_back("--overlap");
    EXPECT_EQ(without, blobs_parameters_hash(3, overlapped)) << "default buckets";
    overlapped.insert(overlapped.end(), {"--bucket_mb", "0.0001"});
    EXPECT_EQ(without, blobs_parameters_hash(3, overlapped)) << "--bucket_mb 0.0001";
  }
}

// --busy_poll_us: init_server and the clients poll their sockets instead of sleeping between
// messages. Handlers run as before, so ssgd (a parameter server round trip per iteration) ends
// with the same parameters, bit for bit, and allreduce (a ring) too.
TEST(BusyPollOverTcp, SameParametersAsWithoutPolling) {
  for (const char* strategy : {"ssgd", "allreduce"}) {
    SCOPED_TRACE(strategy);
    EXPECT_EQ(blobs_parameters_hash(2, {"--psgd", strategy, "--busy_poll_us", "0"}),
              blobs_parameters_hash(2, {"--psgd", strategy, "--busy_poll_us", "300"}));
  }
}

}  // namespace
}  // namespace psgd
