// A run directory is written by one init_server at a time, and a server that could not start
// leaves none behind (experiments/run_dir.h), with real processes: a --resume of a run that is
// still going is refused and the live run's files stay whole; a server whose port is taken exits
// with the reason and the same --output then works.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "tests/integration/cluster.h"
#include "tests/integration/raw_peer.h"

namespace psgd {
namespace {

using testing::Cluster;
using testing::metrics_epochs;
using testing::read_file;
using testing::summary_in;
using testing::wait_for_output;
using namespace std::chrono_literals;

TEST(RunDirectoryGuard, ARunStillGoingIsNotResumed) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  Cluster cluster;
  ASSERT_NO_FATAL_FAILURE(
      cluster.start(2, {"--train_samples", "3000", "--test_samples", "300", "--epochs", "3",
                        "--batch_size", "32", "--delay", "fixed:0.03", "--checkpoint_every", "5"}));
  ASSERT_TRUE(wait_for_output(*cluster.server, "checkpoint at iteration")) << cluster.logs();
  const std::string run = cluster.dir.file("run");
  const auto resume = testing::run(PSGD_INIT_SERVER,
                                   {"--resume", run, "--working_ports", "0", "--join_timeout", "3"},
                                   cluster.dir, 60);
  EXPECT_EQ(resume.code, 2) << resume.out << resume.err;
  EXPECT_NE(resume.err.find("--resume " + run + ": another init_server is running this run now"),
            std::string::npos)
      << resume.err;
  // The live run goes on and keeps every row: the refused resume rewrote nothing.
  ASSERT_EQ(cluster.server->wait(120s).value_or(-1), 0) << cluster.logs();
  EXPECT_EQ(summary_in(run)["status"], "completed");
  EXPECT_EQ(metrics_epochs(run), (std::vector<int>{0, 1, 2, 3}));
}

TEST(RunDirectoryGuard, AServerWhosePortIsTakenLeavesNoRunDirectory) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  // A port someone else listens on (127.0.0.1, a free one the kernel picks).
  const testing::LoopbackListener taken;
  ASSERT_TRUE(taken.ok());
  const std::string port = std::to_string(taken.port());
  testing::TempDir dir;
  const std::string run = dir.file("run");
  const auto out = testing::run(PSGD_INIT_SERVER,
                                {"--working_ports", port, "--bind", "127.0.0.1", "--output", run,
                                 "--train_samples", "500", "--test_samples", "100"},
                                dir, 60);
  EXPECT_EQ(out.code, 1) << out.out << out.err;
  EXPECT_NE(out.err.find("cannot listen on 127.0.0.1:" + port), std::string::npos) << out.err;
  EXPECT_FALSE(std::filesystem::exists(run)) << "the failed start left " << run;
}

}  // namespace
}  // namespace psgd
