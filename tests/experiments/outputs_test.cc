// TensorBoard event files and the Chrome-trace timeline, at the unit level.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <set>

#include "experiments/tensorboard.h"
#include "experiments/timeline.h"
#include "tests/experiments/event_reader.h"
#include "tests/manual_clock.h"

namespace psgd {
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string_view("")), 0x00000000u);
  // RFC 3720 B.4: 32 bytes of zeros and of 0xFF.
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  EXPECT_EQ(crc32c(std::string_view("hello world")), testing::bitwise_crc32c("hello world"));
}

TEST(TensorBoard, EventRoundTripsThroughAnIndependentReader) {
  const std::vector<std::pair<std::string, float>> scalars{{"loss/test", 0.5f},
                                                           {"accuracy/test", 0.875f}};
  const auto event = testing::parse_event(encode_scalar_event(1234.5, 7, scalars));
  EXPECT_DOUBLE_EQ(event.wall_time, 1234.5);
  EXPECT_EQ(event.step, 7);
  EXPECT_FLOAT_EQ(event.scalars.at("loss/test"), 0.5f);
  EXPECT_FLOAT_EQ(event.scalars.at("accuracy/test"), 0.875f);
  EXPECT_EQ(testing::parse_event(encode_file_version_event(1.0)).file_version, "brain.Event:2");
}

TEST(TensorBoard, WriterFileParses) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("psgd-tb-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string path;
  {
    TensorBoardWriter w(dir.string());
    path = w.path();
    for (int step = 0; step < 3; ++step) {
      const std::vector<std::pair<std::string, float>> s{{"x", static_cast<float>(step) / 2}};
      w.add_scalars(step, s);
    }
  }
  EXPECT_NE(path.find("events.out.tfevents."), std::string::npos);
  const auto events = testing::read_events(path);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_EQ(events[3].step, 2);
  EXPECT_FLOAT_EQ(events[3].scalars.at("x"), 1.0f);
  std::filesystem::remove_all(dir);
}

TEST(Timeline, OneTrackPerWorkerAndSlicesEndAtArrival) {
  testing::ManualClock clock;
  TimelineRecorder tl(TimelineOptions{.node_count = 2, .total_iterations = 3}, &clock);
  tl.start();
  for (int it = 0; it < 3; ++it) {
    clock.t = 1.0 + it;
    for (int w = 0; w < 2; ++w) {
      tl.on_worker(
          w, WorkerReport{
                 .iteration = it,
                 .times = {.compute_s = 0.2, .encode_s = 0.1, .wait_s = 0.05, .decode_s = 0.01},
                 .held_s = 0.1 * (2 - w)});
    }
    tl.on_round(RoundStats{.iteration = it + 1, .gradients = 2, .apply_s = 0.02});
  }
  const auto j = tl.to_json();
  std::set<int> worker_pids;
  int rounds = 0;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    if (e.at("pid") == 0) {
      rounds += e.at("name") == "round";
      continue;
    }
    worker_pids.insert(e.at("pid").get<int>());
    if (e.at("name") == "encode" && e.at("pid") == 1 && e.at("args").at("iteration") == 0) {
      // worker 0 arrived at 1.0 - 0.2: encode is [0.7, 0.8] s.
      EXPECT_NEAR(e.at("ts").get<double>(), 0.7e6, 1e-3);
      EXPECT_NEAR(e.at("dur").get<double>(), 0.1e6, 1e-3);
    }
  }
  EXPECT_EQ(worker_pids, (std::set<int>{1, 2}));
  EXPECT_EQ(rounds, 3);
  EXPECT_EQ(tl.stride(), 1);
}

TEST(Timeline, SamplesIterationsToStayUnderTheEventCap) {
  testing::ManualClock clock;
  TimelineRecorder tl(
      TimelineOptions{.node_count = 4, .total_iterations = 1000, .max_events = 1800}, &clock);
  EXPECT_EQ(tl.stride(), 10);  // 18 events per iteration
  for (int it = 0; it < 1000; ++it) {
    clock.t += 0.01;
    for (int w = 0; w < 4; ++w)
      tl.on_worker(w,
                   WorkerReport{.iteration = it, .times = {.compute_s = 0.001, .wait_s = 0.001}});
    tl.on_round(RoundStats{.iteration = it + 1, .gradients = 4});
  }
  EXPECT_LE(tl.events(), 1800u);
  EXPECT_EQ(tl.to_json()["otherData"]["psgd_timeline"]["stride"], 10);
}

}  // namespace
}  // namespace psgd
