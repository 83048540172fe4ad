// The run directory's lock and discard (experiments/run_dir.h): a directory a run is still
// writing is refused to a second RunDirectory, new or resumed; a new run that could not start
// leaves nothing behind, and a resumed one is never discarded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "experiments/run_dir.h"
#include "tests/nn/test_dir.h"

namespace psgd {
namespace {

namespace fs = std::filesystem;

// The ConfigError's message, or "" when `f` did not throw one.
template <typename F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(RunDirectoryLock, ARunStillGoingCannotBeResumedOrWrittenAgain) {
  nn::testing::TempDir tmp;
  const std::string run = tmp.file("run");
  {
    RunDirectory live(run);
    const std::string resumed = config_error([&] { RunDirectory again(run, 0); });
    EXPECT_NE(resumed.find("--resume " + run + ": another init_server is running this run now"),
              std::string::npos)
        << resumed;
    // A new run there is refused too (the files say a run is there; the lock says it is live).
    EXPECT_NE(config_error([&] { RunDirectory again(run); }), "");
    // The live run's files are as it wrote them.
    std::ifstream metrics(run + "/metrics.csv");
    std::string header;
    std::getline(metrics, header);
    EXPECT_EQ(header.rfind("epoch,iteration", 0), 0u) << header;
  }
  // Once the run's process (here: its RunDirectory) is gone, the run can be resumed.
  EXPECT_EQ(config_error([&] { RunDirectory resumed(run, 0); }), "");
}

TEST(RunDirectoryDiscard, ANewRunThatCouldNotStartLeavesNothing) {
  nn::testing::TempDir tmp;
  const std::string run = tmp.file("a/run");
  {
    RunDirectory dir(run);
    dir.write_config({{"job", {{"psgd", "ssgd"}}}});
    dir.discard();
  }
  EXPECT_FALSE(fs::exists(run));
  EXPECT_TRUE(fs::exists(tmp.file("a")));  // a parent it made is left: it may hold other runs
  // The same --output then starts a new run.
  EXPECT_EQ(config_error([&] { RunDirectory again(run); }), "");
}

TEST(RunDirectoryDiscard, KeepsWhatItDidNotWrite) {
  nn::testing::TempDir tmp;
  const std::string run = tmp.file("run");
  fs::create_directories(run + "/logs");  // as run_local.sh makes it before init_server starts
  std::ofstream(run + "/logs/server.log") << "a line\n";
  {
    RunDirectory dir(run);
    dir.discard();
  }
  EXPECT_TRUE(fs::exists(run + "/logs/server.log"));
  EXPECT_FALSE(fs::exists(run + "/metrics.csv"));
  EXPECT_FALSE(fs::exists(run + "/workers.csv"));
}

TEST(RunDirectoryDiscard, LeavesAResumedRunAsItWas) {
  nn::testing::TempDir tmp;
  const std::string run = tmp.file("run");
  { RunDirectory first(run); }
  {
    RunDirectory resumed(run, 0);
    resumed.discard();
  }
  EXPECT_TRUE(fs::exists(run + "/metrics.csv"));
  EXPECT_TRUE(fs::exists(run + "/workers.csv"));
}

}  // namespace
}  // namespace psgd
