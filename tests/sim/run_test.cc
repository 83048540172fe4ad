// init_server --simulate in-process on a small Fashion-MNIST subset: repeatable to the byte.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "experiments/cli.h"
#include "experiments/simulate.h"

namespace psgd {
namespace {

namespace fs = std::filesystem;

bool have_fashion_mnist() {
  return fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TempRoot {
  TempRoot() : path(fs::temp_directory_path() / ("psgd-sim-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~TempRoot() { fs::remove_all(path); }
  fs::path path;
};

ServerOptions small_job(const fs::path& out, const std::string& compute) {
  ServerOptions o;
  o.spec.node_count = 4;
  o.spec.batch_size = 32;
  o.spec.epochs = 2;
  o.spec.train_samples = 2000;
  o.spec.test_samples = 500;
  o.spec.seed = 5;
  o.spec.output = out.string();
  o.sim.enabled = true;
  o.sim.compute = compute;
  o.sim.net_bandwidth = "100Mbps";
  o.sim.net_jitter = "50us";
  o.sim.stragglers = "1:x3";
  o.sim.straggler_dist = "exp:1ms";
  return o;
}

// small_job on a steady cluster: no stragglers and no jitter, so virtual times compare exactly.
ServerOptions steady_job(const fs::path& out, const std::string& compute) {
  ServerOptions o = small_job(out, compute);
  o.sim.stragglers.clear();
  o.sim.straggler_dist.clear();
  o.sim.net_jitter = "0";
  return o;
}

TEST(Simulate, TwoRunsWithModelledComputeWriteByteIdenticalMetrics) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempRoot tmp;
  ASSERT_EQ(run_simulation(small_job(tmp.path / "a", "fixed:2ms")), 0);
  ASSERT_EQ(run_simulation(small_job(tmp.path / "b", "fixed:2ms")), 0);
  const std::string a = slurp(tmp.path / "a" / "metrics.csv");
  EXPECT_EQ(std::count(a.begin(), a.end(), '\n'), 4) << a;  // header, epochs 0..2
  EXPECT_EQ(a, slurp(tmp.path / "b" / "metrics.csv"));
  EXPECT_EQ(slurp(tmp.path / "a" / "workers.csv"), slurp(tmp.path / "b" / "workers.csv"));
  EXPECT_EQ(slurp(tmp.path / "a" / "state_dict.pt"), slurp(tmp.path / "b" / "state_dict.pt"));

  auto summary = nlohmann::json::parse(slurp(tmp.path / "a" / "summary.json"));
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_GT(summary["virtual_seconds"].get<double>(), 0);
  EXPECT_GT(summary["wall_seconds"].get<double>(), 0);
  // The epoch-end evaluations are part of the wall time.
  EXPECT_GT(summary["eval_seconds"].get<double>(), 0);
  EXPECT_LE(summary["eval_seconds"].get<double>(), summary["wall_seconds"].get<double>());
  EXPECT_GT(summary["simulation"]["peak_rss_bytes"].get<double>(), 0);
  auto config = nlohmann::json::parse(slurp(tmp.path / "a" / "config.json"));
  EXPECT_EQ(config["simulation"]["straggler_factors"]["1"], 3.0);
  EXPECT_EQ(config["simulation"]["bandwidth_bps"], 1e8);
  EXPECT_EQ(config["simulation"]["straggler_extra_delay"]["mean_s"], 1e-3);
}

TEST(Simulate, MeasuredComputeKeepsTheSsgdTrajectory) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempRoot tmp;
  ASSERT_EQ(run_simulation(small_job(tmp.path / "m", "measured")), 0);
  ASSERT_EQ(run_simulation(small_job(tmp.path / "f", "fixed:1ms")), 0);
  EXPECT_EQ(slurp(tmp.path / "m" / "state_dict.pt"), slurp(tmp.path / "f" / "state_dict.pt"));
}

TEST(Simulate, AFailedWorkerEndsSsgdWithAClearStatus) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempRoot tmp;
  ServerOptions o = small_job(tmp.path / "f", "fixed:10ms");
  o.sim.fail = "3@0.5";
  EXPECT_EQ(run_simulation(o), 1);
  auto summary = nlohmann::json::parse(slurp(tmp.path / "f" / "summary.json"));
  EXPECT_EQ(summary["status"], "failed: worker 3 failed at 0.5 s (simulated)");
  EXPECT_EQ(summary["ok"], false);
  auto config = nlohmann::json::parse(slurp(tmp.path / "f" / "config.json"));
  EXPECT_EQ(config["simulation"]["failures_at_s"]["3"], 0.5);
}

// --overlap on the virtual clock: a worker computes its next batch while its gradient crosses the
// network, so an iteration costs about the longer of compute and communication, not their sum.
TEST(Simulate, OverlapComputesWhileTheGradientTravels) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempRoot tmp;
  auto job = [&](const char* name, bool overlap) {
    ServerOptions o = steady_job(tmp.path / name, "fixed:40ms");
    o.sim.net_bandwidth = "1Gbps";  // the MLP's 0.8 MB gradient: 6.5 ms alone on a link
    o.spec.overlap = overlap;
    // Plain SGD: a one-step-stale gradient under momentum 0.9 at this rate diverges (the README's
    // --overlap line and bench/README.md "Overlap" say so).
    o.spec.momentum = 0;
    o.spec.learn_rate = 0.05;
    o.spec.epochs = 3;
    return o;
  };
  ASSERT_EQ(run_simulation(job("plain", false)), 0);
  ASSERT_EQ(run_simulation(job("overlap", true)), 0);
  const auto plain = nlohmann::json::parse(slurp(tmp.path / "plain" / "summary.json"));
  const auto overlap = nlohmann::json::parse(slurp(tmp.path / "overlap" / "summary.json"));
  ASSERT_EQ(overlap["status"], "completed");
  EXPECT_EQ(overlap["iterations"], plain["iterations"]);
  const double iterations = plain["iterations"].get<double>();
  const double with = overlap["virtual_seconds"].get<double>();
  const double without = plain["virtual_seconds"].get<double>();
  // Without overlap each iteration is 40 ms of compute plus the gradients' and parameters'
  // transfers; with it, the compute hides behind them.
  EXPECT_GT(without, iterations * 0.040) << plain.dump(1);
  EXPECT_LT(with, without - iterations * 0.030) << "overlap " << with << " s, without " << without;
  // One step of delay still learns plain SGD: within a few points of undelayed ssgd.
  EXPECT_GT(overlap["final_test_accuracy"].get<double>(), 0.6) << overlap.dump(1);
  EXPECT_NEAR(overlap["final_test_accuracy"].get<double>(),
              plain["final_test_accuracy"].get<double>(), 0.05);
}

// allreduce --overlap on the virtual clock: each backward piece advances the worker's clock by
// its share of the modelled step (a third for the forward pass, the rest in proportion to the
// parameters each layer makes final), and a bucket's ring starts at the virtual time backward
// reaches it. resnet8 holds most of its parameters in its last block, final early in backward:
// its ring runs while the earlier blocks compute, so the run takes less virtual time, and ends
// with the same parameters (bit-identical sums).
TEST(Simulate, AllreduceOverlapStartsBucketsAsBackwardReachesThem) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempRoot tmp;
  auto job = [&](const char* name, bool overlap) {
    ServerOptions o = steady_job(tmp.path / name, "fixed:40ms");
    o.spec.psgd = "allreduce";
    o.spec.model = "resnet8";
    o.spec.train_samples = 1024;
    o.spec.epochs = 1;
    o.spec.overlap = overlap;
    if (overlap) o.spec.bucket_mb = 0.01;
    return o;
  };
  ASSERT_EQ(run_simulation(job("plain", false)), 0);
  ASSERT_EQ(run_simulation(job("overlap", true)), 0);
  const auto plain = nlohmann::json::parse(slurp(tmp.path / "plain" / "summary.json"));
  const auto overlap = nlohmann::json::parse(slurp(tmp.path / "overlap" / "summary.json"));
  ASSERT_EQ(overlap["status"], "completed");
  EXPECT_EQ(overlap["iterations"], plain["iterations"]);
  EXPECT_EQ(overlap["parameters_sha256"], plain["parameters_sha256"]);
  const double with = overlap["virtual_seconds"].get<double>();
  const double without = plain["virtual_seconds"].get<double>();
  EXPECT_LT(with, without - 0.005) << "overlap " << with << " s, without " << without;
}

}  // namespace
}  // namespace psgd
