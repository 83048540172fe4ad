// Bad input to init_server and client: one clear line on stderr, a non-zero exit, no hang.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "tests/integration/cluster.h"
#include "tests/integration/process.h"

namespace psgd {
namespace {

using testing::count_lines;
using testing::run;
using testing::TempDir;

TEST(Cli, HelpDescribesFlagsAndDefaults) {
  TempDir dir;
  auto r = run(PSGD_INIT_SERVER, {"--help"}, dir);
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--node_count", "--batch_size", "--redundancy", "--codec", "--psgd",
                           "--learn_rate", "--epochs", "--working_ports", "--block_assignment",
                           "--model", "--dataset", "--output", "--seed", "--threads", "--config"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(r.out.find("per worker"), std::string::npos);
  auto c = run(PSGD_CLIENT, {"--help"}, dir);
  EXPECT_EQ(c.code, 0);
  EXPECT_NE(c.out.find("--ip"), std::string::npos);
}

struct BadCase {
  std::string name;
  std::vector<std::string> args;
  std::string expected;  // a fragment of the error line
};
void PrintTo(const BadCase& c, std::ostream* os) {
  *os << c.name;
}

class BadServerInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadServerInput, OneClearLineAndNonZeroExit) {
  TempDir dir;
  auto args = GetParam().args;
  args.insert(args.end(), {"--output", dir.file("run"), "--working_ports", "0"});
  auto r = run(PSGD_INIT_SERVER, args, dir, 30);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.code, -1) << "hung";
  EXPECT_LT(r.code, 128) << "crashed: " << r.err;
  EXPECT_NE(r.err.find(GetParam().expected), std::string::npos) << r.err;
  EXPECT_LE(count_lines(r.err), 2) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/summary.json")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadServerInput,
    ::testing::Values(
        BadCase{"UnknownFlag", {"--no_such_flag", "1"}, "no_such_flag"},
        BadCase{"ZeroNodes", {"--node_count", "0"}, "node_count"},
        BadCase{"UnknownCodec", {"--codec", "zip"}, "--codec zip"},
        BadCase{"UnknownStrategy", {"--psgd", "magic"}, "--psgd magic"},
        BadCase{"RedundancyAboveNodes", {"--redundancy", "9"}, "--redundancy 9"},
        BadCase{"NotANumber", {"--epochs", "abc"}, "epochs"},
        BadCase{"MissingDatasetDir", {"--dataset", "mnist:/no/such/dir"}, "/no/such/dir"},
        BadCase{"MissingConfigFile", {"--config", "/no/such/file.json"}, "/no/such/file.json"},
        // Verified for issue 21 (fixed before it): each refused with its reason.
        BadCase{"ConfigIsADirectory", {"--config", "/tmp"}, "--config /tmp: not a file"},
        BadCase{"InfiniteLearnRate", {"--learn_rate", "inf"}, "--learn_rate inf"},
        BadCase{"ShipDataUnknownWord",
                {"--ship_data", "sometimes"},
                "--ship_data sometimes: choose never"},
        BadCase{"SimulateShipDataAlways",
                {"--simulate", "--ship_data"},
                "--ship_data always with --simulate"},
        // The simulator models psgd's ring; a blocking backend moves its own bytes.
        BadCase{"SimulateShmAllreduce",
                {"--simulate", "--psgd", "allreduce", "--allreduce_backend", "shm"},
                "--allreduce_backend shm with --simulate: the simulator models our ring only"},
        BadCase{"SharedMemoryOffWithShmAllreduce",
                {"--psgd", "allreduce", "--allreduce_backend", "shm", "--shared_memory", "off"},
                "--shared_memory off with --allreduce_backend shm"},
        BadCase{"UnknownAllreduceBackend",
                {"--psgd", "allreduce", "--allreduce_backend", "nccl"},
                "--allreduce_backend nccl: known backends are ring, shm and gloo"},
        BadCase{"BusyPollNegative",
                {"--busy_poll_us", "-5"},
                "--busy_poll_us -5: give microseconds from 0"},
        BadCase{"SimulateBusyPoll",
                {"--simulate", "--busy_poll_us", "100"},
                "--busy_poll_us 100 with --simulate"},
        // The simulated links have no heartbeats: a liveness flag of one's own is refused.
        BadCase{"SimulateDeadAfter",
                {"--simulate", "--dead_after", "3"},
                "--heartbeat_interval 2 / --dead_after 3 with --simulate"},
        BadCase{"SimulateHeartbeatInterval",
                {"--simulate", "--heartbeat_interval", "0.5"},
                "--heartbeat_interval 0.5 / --dead_after 10 with --simulate"},
        BadCase{"DeadAfterZero", {"--dead_after", "0"}, "--dead_after 0: must be positive"},
        BadCase{"HeartbeatNegative",
                {"--heartbeat_interval", "-1"},
                "--heartbeat_interval -1: must be positive"}),
    [](const auto& info) { return info.param.name; });

TEST(Cli, ConfigFileValuesAndFlagsWin) {
  TempDir dir;
  { std::ofstream(dir.file("job.json")) << R"({"node_count": 3, "codec": "zip"})"; }
  // The file's bad codec is overridden by the flag; the file's node_count is then refused by a
  // flag-given redundancy that is too large for it.
  auto r = run(PSGD_INIT_SERVER,
               {"--config", dir.file("job.json"), "--codec", "plain", "--redundancy", "4",
                "--working_ports", "0"},
               dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--redundancy 4 with --node_count 3"), std::string::npos) << r.err;
  { std::ofstream(dir.file("typo.json")) << R"({"node_cuont": 3})"; }
  r = run(PSGD_INIT_SERVER, {"--config", dir.file("typo.json")}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("node_cuont"), std::string::npos) << r.err;
}

// --overlap with SGD momentum is accepted, with one note naming the risk (bench/README.md
// "Overlap": momentum 0.9 diverged with one step of delay); without momentum there is none.
TEST(Cli, OverlapWithMomentumRunsWithANote) {
  if (!testing::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  const std::vector<std::string> job{"--simulate",     "--overlap", "--node_count",    "2",
                                     "--epochs",       "1",         "--train_samples", "400",
                                     "--test_samples", "100"};
  auto with = job;
  with.insert(with.end(), {"--momentum", "0.5", "--output", dir.file("m")});
  auto r = run(PSGD_INIT_SERVER, with, dir, 120);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("note: --overlap with --momentum 0.5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("6x here"), std::string::npos) << r.out;  // 2 (1 + 0.5) / (1 - 0.5)
  auto without = job;
  without.insert(without.end(), {"--momentum", "0", "--output", dir.file("plain")});
  r = run(PSGD_INIT_SERVER, without, dir, 120);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("--overlap with --momentum"), std::string::npos) << r.out;
  // allreduce's --overlap has no delay: momentum is as safe as without it, and no note.
  auto allreduce = job;
  allreduce.insert(allreduce.end(), {"--psgd", "allreduce", "--momentum", "0.9", "--bucket_mb",
                                     "0.1", "--output", dir.file("allreduce")});
  r = run(PSGD_INIT_SERVER, allreduce, dir, 120);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("--overlap with --momentum"), std::string::npos) << r.out;
}

// Each end of a link beats within the other's --dead_after (network/liveness.h), so a server's
// --dead_after shorter than its own --heartbeat_interval is a working pair, no longer refused.
TEST(Cli, ADeadAfterShorterThanTheHeartbeatIntervalIsAccepted) {
  TempDir dir;
  const auto r =
      run(PSGD_INIT_SERVER,
          {"--dead_after", "1", "--heartbeat_interval", "2", "--working_ports", "0", "--check"},
          dir, 30);
  EXPECT_EQ(r.code, 0) << r.err;
}

// --check reads the passphrase file as a run does: a file a run would refuse fails the check
// (run_local.sh and the launchers rely on it) with the run's own line.
TEST(Cli, CheckRefusesThePassphraseFileARunWouldRefuse) {
  TempDir dir;
  { std::ofstream(dir.file("empty")) << ""; }
  auto r = run(PSGD_INIT_SERVER, {"--passphrase_file", dir.file("empty"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.err.find("--passphrase_file " + dir.file("empty") + " holds an empty passphrase"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  r = run(PSGD_INIT_SERVER, {"--passphrase_file", dir.file("missing"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.err.find("cannot read --passphrase_file " + dir.file("missing")), std::string::npos)
      << r.err;
  { std::ofstream(dir.file("good")) << "a passphrase\n"; }
  r = run(PSGD_INIT_SERVER, {"--passphrase_file", dir.file("good"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, ClientToAClosedPortFailsClearly) {
  TempDir dir;
  auto r =
      run(PSGD_CLIENT, {"--ip", "127.0.0.1", "--port", "1", "--connect_timeout", "1"}, dir, 30);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot connect to 127.0.0.1:1"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

// Integers in config files that do not fit are refused, not wrapped (issue 21: a node_count of
// 2^32 + 2 ran with 2 workers, a seed of -1 wrapped).
TEST(Cli, ConfigIntegersOutOfRangeAreRefused) {
  TempDir dir;
  { std::ofstream(dir.file("wrap.json")) << R"({"node_count": 4294967298})"; }
  auto r = run(PSGD_INIT_SERVER, {"--config", dir.file("wrap.json"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("\"node_count\": 4294967298 is out of range"), std::string::npos) << r.err;
  { std::ofstream(dir.file("seed.json")) << R"({"seed": -1})"; }
  r = run(PSGD_INIT_SERVER, {"--config", dir.file("seed.json"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("\"seed\": -1 is out of range"), std::string::npos) << r.err;
  // JSON has one number type: 1e3 is the whole number 1000; 2.5 and 2^64 are refused.
  { std::ofstream(dir.file("exp.json")) << R"({"epochs": 1e3, "node_count": 2.0})"; }
  r = run(PSGD_INIT_SERVER, {"--config", dir.file("exp.json"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 0) << r.err;
  const auto job = nlohmann::json::parse(r.out)["job"];
  EXPECT_EQ(job["epochs"], 1000);
  EXPECT_EQ(job["node_count"], 2);
  { std::ofstream(dir.file("half.json")) << R"({"epochs": 2.5})"; }
  r = run(PSGD_INIT_SERVER, {"--config", dir.file("half.json"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("\"epochs\": 2.5 is not a whole number"), std::string::npos) << r.err;
  { std::ofstream(dir.file("big.json")) << R"({"seed": 18446744073709551616})"; }
  r = run(PSGD_INIT_SERVER, {"--config", dir.file("big.json"), "--check"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("is out of range"), std::string::npos) << r.err;
}

// A client's flag errors say what is wanted, and a job flag given to a client says where it goes.
TEST(Cli, ClientFlagErrorsSayWhatIsWanted) {
  TempDir dir;
  auto r = run(PSGD_CLIENT, {"--connect_timeout", "0"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--connect_timeout: expected a number greater than 0, got 0"),
            std::string::npos)
      << r.err;
  EXPECT_LT(r.err.size(), 300u) << r.err;
  r = run(PSGD_CLIENT, {"--reconnects", "-1"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("expected a number of 0 or more, got -1"), std::string::npos) << r.err;
  r = run(PSGD_CLIENT, {"--epochs", "3"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("go to init_server"), std::string::npos) << r.err;
}

// An empty $PSGD_PASSPHRASE is refused by both programs in one line (issue 21), not taken for
// "no passphrase".
TEST(Cli, AnEmptyPassphraseInTheEnvironmentIsRefused) {
  TempDir dir;
  ::setenv("PSGD_PASSPHRASE", "", 1);
  auto server =
      run(PSGD_INIT_SERVER, {"--working_ports", "0", "--output", dir.file("run")}, dir, 60);
  auto client =
      run(PSGD_CLIENT, {"--ip", "127.0.0.1", "--port", "1", "--connect_timeout", "1"}, dir, 30);
  ::unsetenv("PSGD_PASSPHRASE");
  for (const auto* r : {&server, &client}) {
    EXPECT_EQ(r->code, 2) << r->err;
    EXPECT_NE(r->err.find("$PSGD_PASSPHRASE is set but empty"), std::string::npos) << r->err;
    EXPECT_EQ(count_lines(r->err), 1) << r->err;
  }
}

TEST(Cli, ClientUnknownFlag) {
  TempDir dir;
  auto r = run(PSGD_CLIENT, {"--nope"}, dir, 30);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--nope"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace psgd
