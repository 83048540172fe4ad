// TorchScript models (--model script:FILE) and models with buffers in the Trainer: a module
// scripted by Python trains through the flat parameters, its BatchNorm buffers are flat too and
// move with training, saving and loading keep both, dropout draws from the trainer's own stream,
// and a module that does not fit the data is refused in one line.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "nn/trainer.h"
#include "nn/trainer_impl.h"
#include "tests/nn/test_dir.h"
#include "tests/script_models.h"

namespace psgd::nn {
namespace {

// The blobs of tests/integration/blobs.h as a Dataset: 3 features, 2 classes.
Dataset blobs(int n, std::uint32_t seed) {
  Dataset d;
  d.width = 3;
  d.height = 1;
  d.num_classes = 2;
  std::mt19937 gen(seed);
  std::normal_distribution<float> g(0, 0.6f);
  for (int i = 0; i < n; ++i) {
    const float m = i % 2 ? 1.0f : -1.0f;
    d.images.insert(d.images.end(), {m + g(gen), m + g(gen), -m + g(gen)});
    d.labels.push_back(i % 2);
  }
  return d;
}

std::shared_ptr<const DataSplit> blobs_split() {
  auto s = std::make_shared<DataSplit>();
  s->train = blobs(256, 1);
  s->test = blobs(100, 2);
  return s;
}

std::vector<std::int64_t> all(const Dataset& d) {
  std::vector<std::int64_t> v(d.size());
  std::iota(v.begin(), v.end(), 0);
  return v;
}

Trainer script_trainer(const std::string& file, std::uint64_t stream = 0) {
  auto data = blobs_split();
  return Trainer(
      TrainerOptions{.model = "script:" + file, .batch_size = 32, .batch_stream = stream}, data,
      all(data->train));
}

TEST(ScriptModel, TrainsThroughFlatParametersAndBuffers) {
  PSGD_SCRIPT_MODELS_OR_SKIP(dir);
  Trainer t = script_trainer(dir + "/blobs_bn.pt");
  // Linear(3, 16) + BatchNorm1d(16) + Linear(16, 2); BatchNorm's running mean and variance.
  EXPECT_EQ(t.num_parameters(), 3u * 16 + 16 + 16 + 16 + 16 * 2 + 2);
  EXPECT_EQ(t.num_buffers(), 32u);
  EXPECT_NE(t.describe().find("32 buffer values"), std::string::npos) << t.describe();
  const std::vector<float> initial_buffers(t.buffers().begin(), t.buffers().end());
  EXPECT_EQ(initial_buffers[0], 0.0f);   // running_mean
  EXPECT_EQ(initial_buffers[16], 1.0f);  // running_var

  // The module's tensors are views into the flat vectors.
  Net& net = TrainerAccess::net(t);
  ASSERT_TRUE(net.scripted());
  const auto params = net.named_parameters();
  EXPECT_EQ(params.front().first, "fc1.weight");
  EXPECT_EQ(params.front().second.data_ptr<float>(), t.parameters().data());
  const auto buffers = net.named_buffers();
  EXPECT_EQ(buffers.front().first, "bn.running_mean");
  EXPECT_EQ(buffers.front().second.data_ptr<float>(), t.buffers().data());

  const double before = t.evaluate().loss;
  for (int step = 0; step < 40; ++step) {
    t.compute_gradient();
    const auto g = t.gradients();
    auto p = t.parameters();
    for (std::size_t i = 0; i < p.size(); ++i)
      p[i] -= 0.1f * g[i];
  }
  const EvalStats after = t.evaluate();
  EXPECT_LT(after.loss, 0.5 * before);
  EXPECT_GT(after.accuracy, 0.95);
  // Training-mode forward passes moved the running statistics.
  EXPECT_NE(std::vector<float>(t.buffers().begin(), t.buffers().end()), initial_buffers);
}

TEST(ScriptModel, ATracedModuleTrainsToo) {
  PSGD_SCRIPT_MODELS_OR_SKIP(dir);
  Trainer t = script_trainer(dir + "/blobs_traced.pt");
  EXPECT_EQ(t.num_buffers(), 32u);
  EXPECT_NO_THROW(t.compute_gradient());
}

std::string refusal(const std::string& file) {
  try {
    script_trainer(file);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(ScriptModel, ModelsThatDoNotFitAreRefusedInOneLine) {
  PSGD_SCRIPT_MODELS_OR_SKIP(dir);
  const std::pair<const char*, const char*> cases[] = {
      {"wrong_input.pt", "RuntimeError: mat1 and mat2 shapes cannot be multiplied"},
      {"wrong_output.pt", "has shape [2 x 7], but the data has 2 classes"},
      {"tuple_output.pt", "returned a Tuple, not one tensor"},
      {"state_dict.pt", "not a TorchScript module"},
      {"no_parameters.pt", "has no trainable parameters"},
      {"missing.pt", "cannot open"},
  };
  for (const auto& [file, expected] : cases) {
    const std::string e = refusal(dir + "/" + file);
    EXPECT_NE(e.find(expected), std::string::npos) << file << ": " << e;
    EXPECT_NE(e.find("--model script:"), std::string::npos) << file << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << file << ": " << e;
  }
}

TEST(ScriptModel, SavedModelLoadsBackAndInPythonsFormat) {
  PSGD_SCRIPT_MODELS_OR_SKIP(dir);
  testing::TempDir out;
  Trainer a = script_trainer(dir + "/blobs_bn.pt");
  for (int step = 0; step < 3; ++step)
    a.compute_gradient();  // moves the buffers
  for (float& p : a.parameters())
    p += 0.25f;
  a.save(out.path().string(), "_best");

  EXPECT_TRUE(std::filesystem::exists(out.file("model_best.pt")));
  EXPECT_TRUE(std::filesystem::exists(out.file("state_dict_best.pt")));
  EXPECT_FALSE(std::filesystem::exists(out.file("model_best.pt.tmp")));
  // model.pt is a TorchScript module with the trained weights and buffers.
  torch::jit::Module saved = torch::jit::load(out.file("model_best.pt"));
  std::vector<float> saved_values;
  for (const auto& p : saved.named_parameters()) {
    const torch::Tensor t = p.value.contiguous();
    saved_values.insert(saved_values.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  EXPECT_TRUE(std::equal(saved_values.begin(), saved_values.end(), a.parameters().begin(),
                         a.parameters().end()));
  for (const auto& b : saved.named_buffers()) {
    if (b.name == "bn.running_var") {
      EXPECT_EQ(b.value[0].item<float>(), a.buffers()[16]);
    }
  }
  Trainer b = script_trainer(dir + "/blobs_bn.pt");
  b.load(out.path().string(), "_best");
  EXPECT_TRUE(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));
  EXPECT_TRUE(std::equal(a.buffers().begin(), a.buffers().end(), b.buffers().begin()));
  EXPECT_EQ(a.evaluate().loss, b.evaluate().loss);
}

TEST(BuiltinModels, CnnBnHasBuffersAndDnnIsParallelSgds) {
  auto data = std::make_shared<DataSplit>();
  data->train.channels = 1;
  data->train.height = data->train.width = 28;
  data->train.num_classes = 10;
  data->train.images.assign(4 * 28 * 28, 0.5f);
  data->train.labels = {0, 1, 2, 3};
  data->test = data->train;
  Trainer cnn(TrainerOptions{.model = "cnn_bn", .batch_size = 4}, data, {0, 1, 2, 3});
  EXPECT_EQ(cnn.num_buffers(), 2u * (32 + 64));
  Trainer dnn(TrainerOptions{.model = "dnn", .batch_size = 4}, data, {0, 1, 2, 3});
  // 784-784-784-392-196-128-10 with biases.
  EXPECT_EQ(dnn.num_parameters(), 784u * 784 + 784 + 784 * 784 + 784 + 784 * 392 + 392 + 392 * 196 +
                                      196 + 196 * 128 + 128 + 128 * 10 + 10);
  EXPECT_EQ(dnn.num_buffers(), 0u);
}

// `n` random 1 x 8 x 8 images of 3 classes (labels i % 3), the same set for training and test:
// enough for cnn_bn's Dropout to draw masks.
std::shared_ptr<DataSplit> random_images(int n, unsigned seed) {
  auto data = std::make_shared<DataSplit>();
  data->train.channels = 1;
  data->train.height = data->train.width = 8;
  data->train.num_classes = 3;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(0, 1);
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < 64; ++k)
      data->train.images.push_back(u(gen));
    data->train.labels.push_back(i % 3);
  }
  data->test = data->train;
  return data;
}

TEST(Dropout, EachTrainerDrawsFromItsOwnStream) {
  // Two trainers of one worker (same seed and batch stream) compute the same gradients even when
  // a third trainer's dropout draws fall between their steps: the masks are the trainer's own.
  const auto data = random_images(64, 3);
  auto make = [&](std::uint64_t stream) {
    return std::make_unique<Trainer>(
        TrainerOptions{.model = "cnn_bn", .batch_size = 16, .batch_stream = stream}, data,
        all(data->train));
  };
  auto a = make(1), b = make(1), other = make(2);
  for (int step = 0; step < 3; ++step) {
    a->compute_gradient();
    other->compute_gradient();
    other->compute_gradient();
    b->compute_gradient();
    EXPECT_TRUE(std::equal(a->gradients().begin(), a->gradients().end(), b->gradients().begin()))
        << "step " << step;
  }
  // A different stream draws other masks (the batches differ too).
  EXPECT_FALSE(
      std::equal(a->gradients().begin(), a->gradients().end(), other->gradients().begin()));
}

TEST(Dropout, ASkippedBatchLeavesTheNextBatchesMasksAsTheyWere) {
  // A worker resumed from a checkpoint skips the batches it had computed (skip_batches) and must
  // then draw the masks the uninterrupted worker draws: cnn_bn's Dropout(0.5) makes the gradients
  // differ otherwise. The parameters never change here, so only the batch and its masks matter.
  const auto data = random_images(48, 5);
  const TrainerOptions options{.model = "cnn_bn", .batch_size = 16, .seed = 9, .batch_stream = 2};
  for (int k : {1, 4}) {  // 4: past the end of the first pass over the 48 samples
    Trainer whole(options, data, all(data->train));
    Trainer resumed(options, data, all(data->train));
    for (int i = 0; i < k; ++i)
      whole.compute_gradient();
    resumed.skip_batches(k);
    for (int i = 0; i < 2; ++i) {
      whole.compute_gradient();
      resumed.compute_gradient();
      EXPECT_TRUE(std::equal(whole.gradients().begin(), whole.gradients().end(),
                             resumed.gradients().begin()))
          << "after " << k << " skipped batches, step " << i;
    }
  }
}

}  // namespace
}  // namespace psgd::nn
