// RunRecorder with background evaluation: rows appear in epoch order once their evaluation is
// done, training is not held up meanwhile, and finish() waits for the last one.
#include "experiments/recorder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/manual_clock.h"

namespace psgd {
namespace {

// Its test accuracy is its first parameter, so each evaluation is recognisable.
class TinyLearner final : public Learner {
 public:
  void set(float accuracy) { params_[0] = accuracy; }
  std::span<float> parameters() override { return params_; }
  std::span<const float> gradients() const override { return params_; }
  StepStats compute_gradient() override { return {}; }
  EvalStats evaluate() override { return {.loss = 1, .accuracy = params_[0], .samples = 1}; }
  std::span<float> buffers() override { return {}; }

 private:
  std::vector<float> params_{0.1f, 0.0f};
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

struct Fixture {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("psgd-recorder-" + std::to_string(::getpid()));
  JobSpec spec;
  TinyLearner model;
  SteadyClock clock;
  std::unique_ptr<RunDirectory> dir;
  std::vector<std::promise<EvalStats>> promises;  // one per background evaluation asked for
  std::unique_ptr<RunRecorder> recorder;

  explicit Fixture(const Clock* wall = nullptr) {
    std::filesystem::remove_all(path);
    spec.node_count = 1;
    spec.epochs = 2;
    dir = std::make_unique<RunDirectory>(path.string());
    promises.reserve(8);
    recorder = std::make_unique<RunRecorder>(
        RecorderSetup{.spec = &spec,
                      .schedule = {.node_count = 1, .iterations_per_epoch = 2, .epochs = 2},
                      .dir = dir.get(),
                      .model = &model,
                      .wall = wall ? wall : &clock,
                      .evaluate_async =
                          [this](std::span<const float>) {
                            promises.emplace_back();
                            return promises.back().get_future().share();
                          },
                      .traffic = [](int) { return Traffic{}; }});
    recorder->set_worker_hosts({"here"});
  }
  ~Fixture() { std::filesystem::remove_all(path); }

  void round() {
    recorder->on_worker(0, WorkerReport{.samples = 8});
    recorder->on_round(RoundStats{.gradients = 1, .train_loss = 0.5, .samples = 8});
  }
  std::string metrics() const { return slurp(path / "metrics.csv"); }
};

TEST(RunRecorder, BackgroundEvaluationsAreWrittenInEpochOrderOnceDone) {
  Fixture f;
  f.recorder->start();               // the initial model is evaluated in place
  EXPECT_EQ(lines(f.metrics()), 2);  // header, epoch 0
  f.round();
  f.round();
  EXPECT_EQ(f.recorder->after_dispatch(2), 1);
  ASSERT_EQ(f.promises.size(), 1u);
  EXPECT_EQ(lines(f.metrics()), 2) << "epoch 1 is written only once evaluated";
  f.round();
  f.round();
  EXPECT_EQ(f.recorder->after_dispatch(4), 2) << "training went on during the evaluation";
  ASSERT_EQ(f.promises.size(), 2u);

  f.promises[1].set_value({.loss = 0.2, .accuracy = 0.8});  // epoch 2's ends first
  f.recorder->after_dispatch(4);
  EXPECT_EQ(lines(f.metrics()), 2) << "epoch 2 waits for epoch 1";
  f.promises[0].set_value({.loss = 0.4, .accuracy = 0.6});
  f.recorder->after_dispatch(4);
  ASSERT_EQ(f.recorder->history().size(), 3u);
  EXPECT_EQ(f.recorder->history()[1].epoch, 1);
  EXPECT_DOUBLE_EQ(f.recorder->history()[1].test_accuracy, 0.6);
  EXPECT_EQ(f.recorder->history()[2].epoch, 2);
  EXPECT_DOUBLE_EQ(f.recorder->history()[2].test_accuracy, 0.8);
  EXPECT_EQ(lines(f.metrics()), 4);
  EXPECT_EQ(lines(slurp(f.path / "workers.csv")), 3);  // header, epochs 1 and 2
}

// A run resumed in the middle of an epoch counts that epoch's rate (the progress line and the
// epoch's console line) from the resume, samples and time alike: the samples before it were
// trained in another process's time.
TEST(RunRecorder, AResumedEpochsRateCountsOnlyTheSamplesSinceTheResume) {
  testing::ManualClock wall;
  nlohmann::json state;
  {
    Fixture f(&wall);
    f.recorder->start();
    f.round();  // the first of epoch 1's two rounds: 8 samples
    wall.t = 1;
    state = f.recorder->snapshot(1);
  }
  Fixture f(&wall);
  f.recorder->resume(state);
  wall.t = 100;  // the server was down meanwhile
  f.recorder->start();
  wall.t = 102;
  f.round();  // 8 samples in the 2 s since the resume
  const std::string line = f.recorder->progress(2);
  EXPECT_NE(line.find(" 4 samples/s"), std::string::npos) << line;
}

TEST(RunRecorder, FinishWaitsForTheLastEvaluation) {
  Fixture f;
  f.recorder->start();
  for (int i = 0; i < 4; ++i)
    f.round();
  f.recorder->after_dispatch(4);
  ASSERT_EQ(f.promises.size(), 2u);
  f.promises[0].set_value({.loss = 0.4, .accuracy = 0.6});
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    f.promises[1].set_value({.loss = 0.3, .accuracy = 0.7});
  });
  f.recorder->finish("completed", true, 4);
  late.join();
  const auto summary = nlohmann::json::parse(slurp(f.path / "summary.json"));
  EXPECT_DOUBLE_EQ(summary["final_test_accuracy"].get<double>(), 0.7);
  EXPECT_EQ(summary["epochs"], 2);
  // The run ends when its last evaluation does.
  EXPECT_GE(summary["wall_seconds"].get<double>(), f.recorder->history().back().wall_s + 0.05);
}

// --model_average ema:BETA: every epoch end evaluates the bias-corrected average of the parameters
// after each iteration, the live model is left as it was, the last iterate is evaluated too, and
// the saved model is the average.
TEST(RunRecorder, ModelAverageIsWhatIsEvaluatedAndSaved) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("psgd-recorder-avg-" + std::to_string(::getpid()));
  std::filesystem::remove_all(path);
  JobSpec spec;
  spec.node_count = 1;
  spec.epochs = 2;
  TinyLearner model;
  SteadyClock clock;
  RunDirectory dir(path.string());
  RunRecorder recorder(
      RecorderSetup{.spec = &spec,
                    .schedule = {.node_count = 1, .iterations_per_epoch = 2, .epochs = 2},
                    .dir = &dir,
                    .model = &model,
                    .wall = &clock,
                    .traffic = [](int) { return Traffic{}; },
                    .average_decay = 0.5});
  recorder.set_worker_hosts({"here"});
  recorder.start();
  auto iterate = [&](float value, std::int64_t iteration) {
    model.set(value);
    recorder.on_worker(0, WorkerReport{.samples = 8});
    recorder.on_round(RoundStats{.gradients = 1, .train_loss = 0.5, .samples = 8});
    return recorder.after_dispatch(iteration);
  };
  iterate(0.8f, 1);
  EXPECT_EQ(iterate(0.4f, 2), 1);
  // (0.5 * 0.5 * 0.8 + 0.5 * 0.4) / (1 - 0.5^2)
  ASSERT_EQ(recorder.history().size(), 2u);
  EXPECT_NEAR(recorder.history()[1].test_accuracy, 0.4 / 0.75, 1e-6);
  EXPECT_FLOAT_EQ(model.parameters()[0], 0.4f) << "the live model is put back";
  iterate(0.2f, 3);
  EXPECT_EQ(iterate(0.6f, 4), 2);
  // Iterates 0.8, 0.4, 0.2, 0.6: sum_i 0.5^(4 - i) 0.5 p_i, over 1 - 0.5^4.
  const double sum = 0.5 * (0.5 * (0.5 * (0.5 * 0.8) + 0.5 * 0.4) + 0.5 * 0.2) + 0.5 * 0.6;
  const double average = sum / (1 - 0.0625);
  EXPECT_NEAR(recorder.history()[2].test_accuracy, average, 1e-6);
  recorder.finish("completed", true, 4);
  const auto summary = nlohmann::json::parse(slurp(path / "summary.json"));
  EXPECT_NEAR(summary["final_test_accuracy"].get<double>(), average, 1e-6);
  EXPECT_EQ(summary["evaluated_model"], "ema:0.5");
  EXPECT_NEAR(summary["final_iterate_test_accuracy"].get<double>(), 0.6, 1e-6);
  recorder.load_evaluated_model();
  EXPECT_NEAR(model.parameters()[0], average, 1e-6) << "the saved model is the one evaluated";
  std::filesystem::remove_all(path);
}

TEST(RunRecorder, WithoutAveragingTheLastIterateIsEvaluated) {
  Fixture f;
  f.recorder->start();
  for (int i = 0; i < 4; ++i)
    f.round();
  f.recorder->after_dispatch(4);
  ASSERT_EQ(f.promises.size(), 2u) << "one evaluation per epoch, none of an average";
  f.promises[0].set_value({.loss = 0.4, .accuracy = 0.6});
  f.promises[1].set_value({.loss = 0.3, .accuracy = 0.7});
  f.recorder->finish("completed", true, 4);
  const auto summary = nlohmann::json::parse(slurp(f.path / "summary.json"));
  EXPECT_EQ(summary["evaluated_model"], "last iterate");
  EXPECT_DOUBLE_EQ(summary["final_iterate_test_accuracy"].get<double>(), 0.7);
}

}  // namespace
}  // namespace psgd
