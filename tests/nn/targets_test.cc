// Targets beyond class labels, and channels-last images (issue 17):
//   - regression: float targets from CSV (one or several --label_column columns) and NumPy
//     (y of shape (N) or (N, T)), kept through subsets, data packs and hashes; the Trainer fits
//     them with MSE and reports RMSE and R^2; mismatches between --target and the data are refused;
//   - --image_layout: a channels-last (N, H, W, C) array is read as its channels-first copy, so
//     a model trains on it bit-identically with the same seed; auto says what it decided.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/csv.h"
#include "nn/data_pack.h"
#include "nn/data_source.h"
#include "nn/npy.h"
#include "nn/trainer.h"
#include "tests/nn/expect_error.h"
#include "tests/nn/npy_bytes.h"
#include "tests/nn/test_dir.h"
#include "tests/script_models.h"

namespace psgd::nn {
namespace {

using testing::expect_config_error;
using testing::TempDir;
using Bytes = std::vector<unsigned char>;

// A version-1 .npy image of `data` (C order).
Bytes npy(const std::string& descr, const std::vector<std::int64_t>& shape, const void* data,
          std::size_t bytes) {
  std::string dims;
  for (auto d : shape)
    dims += std::to_string(d) + ", ";
  const auto* p = static_cast<const unsigned char*>(data);
  return testing::npy_bytes(descr, "(" + dims + ")", Bytes(p, p + bytes));
}

template <class T>
NpyArray array(const std::string& descr, const std::vector<std::int64_t>& shape,
               const std::vector<T>& v) {
  return parse_npy(npy(descr, shape, v.data(), v.size() * sizeof(T)), "test");
}

// Rows y1 = 2a - b + 0.5, y2 = a + 3b - 1 (plus a little noise) of features a, b in [-1, 1],
// written with the target columns between and after the features.
std::string linear_csv(int n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::normal_distribution<double> noise(0, 0.02);
  std::string text = "a,y1,b,y2\n";
  for (int i = 0; i < n; ++i) {
    const double a = u(gen), b = u(gen);
    text += std::to_string(a) + "," + std::to_string(2 * a - b + 0.5 + noise(gen)) + "," +
            std::to_string(b) + "," + std::to_string(a + 3 * b - 1 + noise(gen)) + "\n";
  }
  return text;
}

TEST(Regression, CsvTargetsAreTheNamedColumnsInTheirOrder) {
  TempDir dir;
  std::ofstream(dir.file("d.csv")) << "a,y1,b,y2\n1,10,2,20\n3,30,4,40\n";
  const Dataset d = read_csv(dir.file("d.csv"), {.label_column = "y2,y1", .regression = true});
  EXPECT_EQ(d.target_dims, 2);
  EXPECT_EQ(d.width, 2);
  EXPECT_EQ(d.images, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(d.targets, (std::vector<float>{20, 10, 40, 30}));
  EXPECT_EQ(d.labels, (std::vector<std::int64_t>{0, 0}));
  EXPECT_EQ(d.num_classes, 1);
  // Default: the last column; an index works as for labels.
  EXPECT_EQ(read_csv(dir.file("d.csv"), {.regression = true}).targets,
            (std::vector<float>{20, 40}));
  EXPECT_EQ(read_csv(dir.file("d.csv"), {.label_column = "1", .regression = true}).targets,
            (std::vector<float>{10, 30}));
  // Non-integer values are fine as targets but not as class labels.
  std::ofstream(dir.file("f.csv")) << "a,y\n1,0.25\n2,-7.5\n";
  EXPECT_EQ(read_csv(dir.file("f.csv"), {.regression = true}).targets,
            (std::vector<float>{0.25f, -7.5f}));
  expect_config_error([&] { read_csv(dir.file("f.csv")); }, "labels are integers");
}

TEST(Regression, BadTargetColumnsAreRefusedInOneLine) {
  TempDir dir;
  std::ofstream(dir.file("d.csv")) << "a,y1,b,y2\n1,10,2,20\n3,30,4,40\n";
  expect_config_error([&] { read_csv(dir.file("d.csv"), {.label_column = "y1,y2"}); },
                      "need --target regression");
  expect_config_error(
      [&] { read_csv(dir.file("d.csv"), {.label_column = "y1,y1", .regression = true}); },
      "named twice");
  expect_config_error(
      [&] { read_csv(dir.file("d.csv"), {.label_column = "y1,zz", .regression = true}); },
      "no such column");
  expect_config_error(
      [&] { read_csv(dir.file("d.csv"), {.label_column = "a,y1,b,y2", .regression = true}); },
      "no feature columns");
  expect_config_error(
      [&] { load_dataset("mnist:" + dir.path().string(), 0, 0, {.regression = true}); },
      "float targets come from csv:, npy: or npz:");
}

TEST(Regression, CsvPairTakesEveryColumnOfTheTargetFile) {
  TempDir dir;
  std::ofstream(dir.file("x.csv")) << "1,2\n3,4\n";
  std::ofstream(dir.file("y.csv")) << "0.5,1.5\n2.5,3.5\n";
  const Dataset d = read_csv_pair(dir.file("x.csv"), dir.file("y.csv"), {.regression = true});
  EXPECT_EQ(d.target_dims, 2);
  EXPECT_EQ(d.targets, (std::vector<float>{0.5f, 1.5f, 2.5f, 3.5f}));
  expect_config_error([&] { read_csv_pair(dir.file("x.csv"), dir.file("y.csv")); },
                      "--target regression");
}

TEST(Regression, NpyTargetsOfOneOrSeveralColumns) {
  const NpyArray x = array<float>("<f4", {3, 2}, {1, 2, 3, 4, 5, 6});
  const NpyArray y1 = array<float>("<f4", {3}, {0.5f, 1.5f, 2.5f});
  const NpyArray y2 = array<double>("<f8", {3, 2}, {1, 2, 3, 4, 5, 6});
  const Dataset a = dataset_from_arrays(x, y1, "x", "y", {.regression = true});
  EXPECT_EQ(a.target_dims, 1);
  EXPECT_EQ(a.targets, (std::vector<float>{0.5f, 1.5f, 2.5f}));
  const Dataset b = dataset_from_arrays(x, y2, "x", "y", {.regression = true});
  EXPECT_EQ(b.target_dims, 2);
  EXPECT_EQ(b.targets, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  expect_config_error([&] { dataset_from_arrays(x, y1, "x", "y"); }, "--target regression");
}

TEST(Regression, TargetsTravelThroughSubsetsPacksAndHashes) {
  TempDir dir;
  std::ofstream(dir.file("d.csv")) << linear_csv(20, 1);
  const Dataset d = read_csv(dir.file("d.csv"), {.label_column = "y1,y2", .regression = true});
  const std::vector<std::int64_t> rows{3, 7, 11};
  const Dataset s = subset(d, rows, "s");
  ASSERT_EQ(s.targets.size(), 6u);
  EXPECT_EQ(s.targets[2], d.targets[14]);
  EXPECT_EQ(s.target_dims, 2);
  const auto bytes = pack_dataset(d);
  const Dataset back = unpack_dataset(bytes, "back");
  EXPECT_EQ(back.targets, d.targets);
  EXPECT_EQ(back.target_dims, 2);
  EXPECT_EQ(back.images, d.images);
  EXPECT_EQ(content_hash(back), content_hash(d));
  EXPECT_EQ(rows_hash(d, rows), content_hash(s));
  Dataset changed = d;
  changed.targets[5] += 1;
  EXPECT_NE(content_hash(changed), content_hash(d)) << "the hash covers the targets";
  EXPECT_NE(rows_hash(changed, std::vector<std::int64_t>{2}),
            rows_hash(d, std::vector<std::int64_t>{2}));
}

// Plain SGD on the flat spans.
void sgd(Trainer& t, int steps, float lr) {
  for (int i = 0; i < steps; ++i) {
    t.compute_gradient();
    auto p = t.parameters();
    auto g = t.gradients();
    for (std::size_t j = 0; j < p.size(); ++j)
      p[j] -= lr * g[j];
  }
}

double stddev(const std::vector<float>& v) {
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double sq = 0;
  for (float x : v)
    sq += (x - mean) * (x - mean);
  return std::sqrt(sq / static_cast<double>(v.size()));
}

TEST(Regression, TrainerFitsLinearTargetsAndReportsRmseAndR2) {
  TempDir dir;
  std::ofstream(dir.file("train.csv")) << linear_csv(800, 1);
  std::ofstream(dir.file("test.csv")) << linear_csv(200, 2);
  auto data = std::make_shared<DataSplit>(
      load_dataset("csv:train=" + dir.file("train.csv") + ",test=" + dir.file("test.csv"), 0, 0,
                   {.label_column = "y1,y2", .regression = true}));
  std::vector<std::int64_t> all(data->train.size());
  std::iota(all.begin(), all.end(), 0);
  Trainer t({.model = "mlp", .target = "regression", .batch_size = 32, .seed = 3}, data, all);
  const EvalStats before = t.evaluate();
  ASSERT_TRUE(before.rmse && before.r2);
  EXPECT_TRUE(std::isnan(before.accuracy));
  sgd(t, 600, 0.05f);
  const EvalStats after = t.evaluate();
  ASSERT_TRUE(after.rmse && after.r2);
  const double spread = stddev(data->test.targets);
  EXPECT_LT(*after.rmse, 0.1 * spread) << "targets' standard deviation " << spread;
  EXPECT_LT(*after.rmse, *before.rmse);
  EXPECT_GT(*after.r2, 0.98);
  // The loss is the mean squared error per target value: RMSE^2.
  EXPECT_NEAR(after.loss, *after.rmse * *after.rmse, 1e-6 + 1e-4 * after.loss);
}

TEST(Regression, TargetAndDataMustAgree) {
  TempDir dir;
  std::ofstream(dir.file("d.csv")) << linear_csv(40, 1);
  auto regression = std::make_shared<DataSplit>(
      load_dataset("csv:" + dir.file("d.csv"), 0, 0, {.regression = true}));
  auto classes = std::make_shared<DataSplit>();
  classes->train = regression->train;
  classes->train.targets.clear();
  classes->train.target_dims = 0;
  classes->train.num_classes = 1;
  expect_config_error([&] { Trainer({.model = "mlp", .target = "xy"}, regression, {}); },
                      "use --target regression");
  expect_config_error([&] { Trainer({.model = "mlp", .target = "regression"}, classes, {}); },
                      "not float targets");
}

// A TorchScript model must return one value per target: blobs_bn.pt (3 features, 2 outputs) fits
// a table of 3 features and 2 targets, and is refused in one line for 1 target.
TEST(Regression, ScriptModelOutputMustMatchTheTargets) {
  PSGD_SCRIPT_MODELS_OR_SKIP(models);
  TempDir dir;
  std::ofstream(dir.file("two.csv")) << "a,b,c,y1,y2\n1,2,3,4,5\n6,7,8,9,10\n1,1,1,1,1\n";
  std::ofstream(dir.file("one.csv")) << "a,b,c,y\n1,2,3,4\n6,7,8,9\n1,1,1,1\n";
  const std::string model = "script:" + models + "/blobs_bn.pt";
  auto two = std::make_shared<DataSplit>();
  two->train = read_csv(dir.file("two.csv"), {.label_column = "y1,y2", .regression = true});
  EXPECT_NO_THROW(Trainer({.model = model, .target = "regression"}, two, {}));
  auto one = std::make_shared<DataSplit>();
  one->train = read_csv(dir.file("one.csv"), {.regression = true});
  expect_config_error([&] { Trainer({.model = model, .target = "regression"}, one, {}); },
                      "but the data has 1 regression targets per sample: it must be [2 x 1]");
}

// --- Channels-last images -------------------------------------------------------------------

struct Images {
  NpyArray nhwc, nchw, labels;
};

// n 3-channel h x w images as uint8, once channels-last and once channels-first.
Images images(int n, int h, int w, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<std::uint8_t> last(static_cast<std::size_t>(n * h * w * 3));
  std::vector<std::int64_t> labels;
  for (int i = 0; i < n; ++i) {
    const int label = i % 2;
    labels.push_back(label);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) {
          // Class 1 is bright in channel 2's top half: the channel order matters.
          const bool bright = label == 1 && c == 2 && y < h / 2;
          last[static_cast<std::size_t>(((i * h + y) * w + x) * 3 + c)] =
              static_cast<std::uint8_t>((bright ? 150 : 0) + gen() % 100);
        }
  }
  std::vector<std::uint8_t> first(last.size());
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          first[static_cast<std::size_t>(((i * 3 + c) * h + y) * w + x)] =
              last[static_cast<std::size_t>(((i * h + y) * w + x) * 3 + c)];
  return {array<std::uint8_t>("|u1", {n, h, w, 3}, last),
          array<std::uint8_t>("|u1", {n, 3, h, w}, first), array<std::int64_t>("<i8", {n}, labels)};
}

TEST(ImageLayout, ChannelsLastIsReadAsItsChannelsFirstCopy) {
  const Images im = images(6, 8, 10, 1);
  std::vector<std::string> notes;
  const Dataset last =
      dataset_from_arrays(im.nhwc, im.labels, "x", "y", {.layout = "auto"}, &notes);
  const Dataset first = dataset_from_arrays(im.nchw, im.labels, "x", "y", {.layout = "nchw"});
  EXPECT_EQ(last.channels, 3);
  EXPECT_EQ(last.height, 8);
  EXPECT_EQ(last.width, 10);
  EXPECT_EQ(last.images, first.images);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("channels-last"), std::string::npos) << notes[0];
  EXPECT_NE(notes[0].find("--image_layout nchw"), std::string::npos) << notes[0];
  // Said explicitly, nothing is noted; auto on the channels-first copy keeps it.
  notes.clear();
  EXPECT_EQ(dataset_from_arrays(im.nhwc, im.labels, "x", "y", {.layout = "nhwc"}, &notes).images,
            first.images);
  EXPECT_TRUE(notes.empty());
  EXPECT_EQ(dataset_from_arrays(im.nchw, im.labels, "x", "y", {.layout = "auto"}, &notes).images,
            first.images);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("channels-first"), std::string::npos) << notes[0];
  EXPECT_EQ(detect_layout(std::vector<std::int64_t>{5, 32, 32, 3}), "nhwc");
  EXPECT_EQ(detect_layout(std::vector<std::int64_t>{5, 3, 32, 32}), "nchw");
  EXPECT_EQ(detect_layout(std::vector<std::int64_t>{5, 3, 32, 3}), "nchw") << "ambiguous: nchw";
}

TEST(ImageLayout, ChannelsLastTrainsBitIdenticallyToItsChannelsFirstCopy) {
  const Images train = images(64, 8, 8, 1);
  const Images test = images(16, 8, 8, 2);
  auto split = [&](bool last, const std::string& layout) {
    auto s = std::make_shared<DataSplit>();
    s->train = dataset_from_arrays(last ? train.nhwc : train.nchw, train.labels, "x", "y",
                                   {.layout = layout});
    s->test = dataset_from_arrays(last ? test.nhwc : test.nchw, test.labels, "x", "y",
                                  {.layout = layout});
    return s;
  };
  std::vector<std::int64_t> all(64);
  std::iota(all.begin(), all.end(), 0);
  Trainer a({.model = "cnn", .batch_size = 16, .seed = 5}, split(true, "auto"), all);
  Trainer b({.model = "cnn", .batch_size = 16, .seed = 5}, split(false, "nchw"), all);
  sgd(a, 30, 0.05f);
  sgd(b, 30, 0.05f);
  const auto pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
  EXPECT_EQ(a.evaluate().loss, b.evaluate().loss);
  // Read the wrong way round, the same bytes are 8 channels of 8 x 3: another model altogether.
  EXPECT_EQ(dataset_from_arrays(train.nhwc, train.labels, "x", "y", {.layout = "nchw"}).channels,
            8);
}

}  // namespace
}  // namespace psgd::nn
