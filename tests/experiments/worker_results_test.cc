// Results come home (experiments/worker_results.h): trace rows, the worker's outbox and the
// server's collector, which takes untrusted pieces.
#include "experiments/worker_results.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/clock.h"
#include "tests/manual_clock.h"

namespace psgd {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct TempDir {
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("psgd-results-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

TEST(TraceRows, RoundTripThroughTheirLine) {
  const TraceRow row{.wall_s = 1.25,
                     .epoch = 2,
                     .batch = 17,
                     .loss = 0.5,
                     .samples = 32,
                     .bytes_sent = 1000,
                     .bytes_received = 2000};
  const std::string line = trace_line(row);
  ASSERT_EQ(line.back(), '\n');
  const auto parsed = parse_trace_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(parsed);
  EXPECT_DOUBLE_EQ(parsed->wall_s, 1.25);
  EXPECT_EQ(parsed->epoch, 2);
  EXPECT_EQ(parsed->batch, 17);
  EXPECT_DOUBLE_EQ(parsed->loss, 0.5);
  EXPECT_EQ(parsed->samples, 32);
  EXPECT_EQ(parsed->bytes_sent, 1000u);
  EXPECT_EQ(parsed->bytes_received, 2000u);
  // A diverged loss is still a row.
  EXPECT_TRUE(parse_trace_line("1.0,1,0,nan,32,0,0"));
}

TEST(TraceRows, AnythingElseIsNotARow) {
  for (const char* bad :
       {"", "1,1,0,0.5,32,0", "1,1,0,0.5,32,0,0,9", "1,0,0,0.5,32,0,0", "-1,1,0,0.5,32,0,0",
        "1,1,-3,0.5,32,0,0", "1,1,0,0.5,32,0,0x", "1,1,0,0.5,32,-5,0", "inf,1,0,0.5,32,0,0",
        "1,1,0,,32,0,0", "wall_s,epoch,batch,loss,samples,bytes_sent,bytes_received"}) {
    EXPECT_FALSE(parse_trace_line(bad)) << bad;
  }
}

// A learner whose loss is its step number and whose batches are 10 samples.
class CountingLearner final : public Learner {
 public:
  std::span<float> parameters() override { return p_; }
  std::span<const float> gradients() const override { return p_; }
  StepStats compute_gradient() override {
    return {.loss = static_cast<double>(steps_++), .samples = 10};
  }
  EvalStats evaluate() override { return {}; }
  std::span<float> buffers() override { return {}; }

 private:
  std::vector<float> p_{0.0f};
  int steps_ = 0;
};

TEST(TraceLearner, GivesEveryBatchItsRow) {
  CountingLearner inner;
  testing::ManualClock clock;
  clock.t = 100;
  std::vector<TraceRow> rows;
  std::uint64_t sent = 0;
  // 25 samples held, resuming after 1 batch of 10.
  TraceLearner trace(
      inner, clock, 25, 1, 10, [&] { return LinkTraffic{.sent = sent, .received = 2 * sent}; },
      [&](const TraceRow& r) { rows.push_back(r); });
  for (int i = 0; i < 4; ++i) {
    clock.t += 0.5;
    sent += 100;
    trace.compute_gradient();
  }
  ASSERT_EQ(rows.size(), 4u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_DOUBLE_EQ(rows[i].wall_s, 0.5 * static_cast<double>(i + 1));
    EXPECT_EQ(rows[i].batch, static_cast<std::int64_t>(i) + 1);
    EXPECT_DOUBLE_EQ(rows[i].loss, static_cast<double>(i));
    EXPECT_EQ(rows[i].samples, 10);
    EXPECT_EQ(rows[i].bytes_sent, 100 * (i + 1));
    EXPECT_EQ(rows[i].bytes_received, 200 * (i + 1));
  }
  // Samples seen before each batch: 10, 20, 30, 40 of 25 held: epochs 1, 1, 2, 2.
  EXPECT_EQ(rows[0].epoch, 1);
  EXPECT_EQ(rows[1].epoch, 1);
  EXPECT_EQ(rows[2].epoch, 2);
  EXPECT_EQ(rows[3].epoch, 2);
}

TEST(WorkerLogOutbox, CutsWholeLinesIntoBoundedPieces) {
  WorkerLogOutbox out;
  const int n = 5000;  // ~150 KiB of trace: several pieces
  for (int i = 0; i < n; ++i)
    out.row(TraceRow{.wall_s = i * 0.01, .batch = i, .loss = 1.5, .samples = 32});
  out.log("hello");
  const auto pieces = out.take(false);
  ASSERT_GT(pieces.size(), 2u);
  std::string trace, log;
  for (const auto& p : pieces) {
    EXPECT_LE(p.trace.size(), kWorkerLogPieceBytes);
    EXPECT_LE(p.log.size(), kWorkerLogPieceBytes);
    EXPECT_TRUE(p.trace.empty() || p.trace.back() == '\n');
    EXPECT_FALSE(p.last);
    trace += p.trace;
    log += p.log;
  }
  EXPECT_EQ(log, "hello\n");
  EXPECT_EQ(std::count(trace.begin(), trace.end(), '\n'), n);
  EXPECT_FALSE(out.pending());
  // The last take has exactly one piece with `last`, even with nothing left.
  const auto last = out.take(true);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(last[0].last);
}

TEST(WorkerLogOutbox, StopsAtItsLimitsAndSaysSo) {
  WorkerLogOutbox out;
  const std::string line(4000, 'x');
  std::size_t sent = 0;
  for (int i = 0; i < 400; ++i) {  // 1.6 MB of log asked for, 1 MiB allowed
    out.log(line);
    for (const auto& p : out.take(false))
      sent += p.log.size();
  }
  EXPECT_LE(sent, kWorkerLogLimit);
  EXPECT_GT(sent, kWorkerLogLimit - 8192);
  const auto last = out.take(true);
  ASSERT_FALSE(last.empty());
  EXPECT_NE(last.back().log.find("did not send"), std::string::npos) << last.back().log;
  EXPECT_LE(sent + last.back().log.size(), kWorkerLogLimit);
}

TEST(WorkerResults, KeepsWhatIsWellFormedAndWritesEveryWorker) {
  TempDir dir;
  WorkerResults results(3);
  const std::string good = trace_line({.wall_s = 0.5, .batch = 0, .loss = 2.0, .samples = 32});
  // Worker 0: a good row, a malformed one, a row cut off; control bytes in its log.
  results.add(0, WorkerLog{.log = std::string("a\x1b[31mred\x07\n"),
                           .trace = good + "1,2,3\n" + "0.7,1,1,2.0,3"});
  results.add(0, WorkerLog{.trace = good, .last = true});
  results.add(0, WorkerLog{.trace = good});  // after its last piece: ignored
  EXPECT_TRUE(results.complete(0));
  EXPECT_EQ(results.rows(0), 2);
  // Worker 1: one piece, then lost.
  results.add(1, WorkerLog{.log = "started\n", .trace = good});
  results.lost(1, "worker 1 was lost: killed");
  // Worker 2 sent nothing; worker 7 and -1 do not exist.
  results.add(7, WorkerLog{.trace = good});
  results.add(-1, WorkerLog{.trace = good});
  const auto summary = results.write(dir.path.string());
  ASSERT_EQ(summary.size(), 3u);
  const std::string header = std::string(kTraceColumns) + "\n";
  EXPECT_EQ(slurp((dir.path / "workers/0/trace.csv").string()), header + good + good);
  EXPECT_EQ(slurp((dir.path / "workers/0/log.txt").string()), "a?[31mred?\n");
  EXPECT_EQ(summary[0]["complete"], true);
  EXPECT_EQ(summary[0]["trace_rows"], 2);
  EXPECT_NE(summary[0]["missing"].get<std::string>().find("2 malformed trace rows"),
            std::string::npos)
      << summary[0].dump();
  EXPECT_EQ(slurp((dir.path / "workers/1/trace.csv").string()), header + good);
  EXPECT_EQ(summary[1]["complete"], false);
  EXPECT_NE(summary[1]["missing"].get<std::string>().find("worker 1 was lost: killed"),
            std::string::npos);
  EXPECT_EQ(slurp((dir.path / "workers/2/trace.csv").string()), header);
  EXPECT_EQ(slurp((dir.path / "workers/2/log.txt").string()), "");
  EXPECT_NE(summary[2]["missing"].get<std::string>().find("nothing arrived"), std::string::npos);
}

TEST(WorkerResults, BoundsWhatAHostileWorkerSends) {
  WorkerResults results(1);
  const std::string row = trace_line({.wall_s = 1, .batch = 1, .loss = 1, .samples = 1});
  std::string huge;
  while (huge.size() < 4 * kWorkerLogPieceBytes)
    huge += row;
  std::size_t sent = 0;
  // Oversized pieces are cut to the piece size; the total stops at the trace limit.
  while (sent < 2 * kWorkerTraceLimit) {
    results.add(0, WorkerLog{.log = std::string(3 * kWorkerLogPieceBytes, 'x'), .trace = huge});
    sent += kWorkerLogPieceBytes;  // what is kept of each
  }
  TempDir dir;
  const auto summary = results.write(dir.path.string());
  const auto trace_bytes = std::filesystem::file_size(dir.path / "workers/0/trace.csv");
  EXPECT_LE(trace_bytes, kWorkerTraceLimit + 128);
  EXPECT_LE(std::filesystem::file_size(dir.path / "workers/0/log.txt"), kWorkerLogLimit);
  const std::string missing = summary[0]["missing"];
  EXPECT_NE(missing.find("cut"), std::string::npos) << missing;
  EXPECT_NE(missing.find("trace cut at 16 MiB"), std::string::npos) << missing;
  EXPECT_NE(missing.find("log cut at 1 MiB"), std::string::npos) << missing;
}

TEST(WorkerResults, AResumedRunContinuesTheFilesItFinds) {
  TempDir dir;
  const std::string row = trace_line({.wall_s = 1, .batch = 3, .loss = 1, .samples = 8});
  {
    WorkerResults before(1);
    before.add(0, WorkerLog{.log = "first part\n", .trace = row, .last = true});
    before.write(dir.path.string());
  }
  WorkerResults after(1);
  after.load(dir.path.string());
  after.add(0, WorkerLog{.log = "second part\n", .trace = row, .last = true});
  after.write(dir.path.string());
  EXPECT_EQ(slurp((dir.path / "workers/0/trace.csv").string()),
            std::string(kTraceColumns) + "\n" + row + row);
  EXPECT_EQ(slurp((dir.path / "workers/0/log.txt").string()),
            "first part\npsgd: the run was resumed here\nsecond part\n");
}

}  // namespace
}  // namespace psgd
