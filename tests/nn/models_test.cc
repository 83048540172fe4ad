// Models for new shapes (cnn adapting to C x H x W, resnet8, autoencoder), the reconstruction
// target and validation evaluation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "core/error.h"
#include "nn/models_impl.h"
#include "nn/trainer.h"

namespace psgd::nn {
namespace {

Dataset noise(int n, std::int64_t c, std::int64_t h, std::int64_t w, int classes,
              std::uint32_t seed) {
  Dataset d;
  d.channels = c;
  d.height = h;
  d.width = w;
  d.num_classes = classes;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(0, 1);
  for (int i = 0; i < n; ++i) {
    d.labels.push_back(i % classes);
    for (std::int64_t k = 0; k < d.sample_numel(); ++k)
      d.images.push_back(u(gen));
  }
  return d;
}

std::vector<std::int64_t> iota(std::size_t n) {
  std::vector<std::int64_t> v(n);
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

TEST(Models, CnnAndResnet8AdaptToTheInputShape) {
  torch::NoGradGuard no_grad;
  for (auto [c, h, w] : {std::tuple{3, 32, 32}, std::tuple{1, 28, 28}, std::tuple{2, 30, 18},
                         std::tuple{3, 9, 13}}) {
    for (const char* name : {"cnn", "resnet8"}) {
      auto model = make_model(name, c, h, w, 10);
      const auto out = model->forward(torch::rand({2, c, h, w}));
      EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 10})) << name << " " << h << "x" << w;
    }
  }
  EXPECT_THROW(make_model("resnet8", 3, 4, 4, 10), ConfigError);
  EXPECT_THROW(make_model("cnn", 1, 3, 28, 10), ConfigError);
  auto ae = make_model("autoencoder", 1, 1, 12, 12);
  EXPECT_EQ(ae->forward(torch::rand({4, 1, 1, 12})).sizes(), (std::vector<std::int64_t>{4, 12}));
}

TEST(Models, Resnet8HasNoBuffersSoTheFlatParametersAreTheWholeModel) {
  auto model = make_model("resnet8", 3, 32, 32, 10);
  EXPECT_TRUE(model->buffers().empty());
  std::int64_t n = 0;
  for (const auto& p : model->parameters())
    n += p.numel();
  EXPECT_GT(n, 50000);
  EXPECT_LT(n, 200000);
}

TEST(Trainer, ReconstructionLossFallsAndAccuracyIsNaN) {
  // 8 features that live on a 2-dimensional subspace: an autoencoder can learn them.
  auto split = std::make_shared<DataSplit>();
  std::mt19937 gen(3);
  std::normal_distribution<float> g(0, 1);
  for (Dataset* d : {&split->train, &split->test}) {
    d->width = 8;
    d->height = 1;
    d->num_classes = 1;
    for (int i = 0; i < 256; ++i) {
      const float a = g(gen), b = g(gen);
      for (int k = 0; k < 8; ++k)
        d->images.push_back(a * (k % 3 - 1) + b * (k % 2 ? 0.5f : -1));
      d->labels.push_back(0);
    }
  }
  Trainer t({.model = "autoencoder", .target = "xx", .batch_size = 32, .seed = 1}, split,
            iota(split->train.size()));
  const EvalStats before = t.evaluate();
  EXPECT_TRUE(std::isnan(before.accuracy));
  std::vector<float> velocity(t.parameters().size(), 0.0f);
  for (int step = 0; step < 300; ++step) {
    t.compute_gradient();
    auto p = t.parameters();
    auto grad = t.gradients();
    for (std::size_t i = 0; i < p.size(); ++i) {
      velocity[i] = 0.9f * velocity[i] + grad[i];
      p[i] -= 0.05f * velocity[i];
    }
  }
  const EvalStats after = t.evaluate();
  EXPECT_LT(after.loss, 0.3 * before.loss) << before.loss << " -> " << after.loss;
}

TEST(Trainer, EvaluatesTheValidationSplitBesideTheTestSet) {
  auto split = std::make_shared<DataSplit>();
  split->train = noise(20, 1, 4, 4, 2, 1);
  split->test = noise(10, 1, 4, 4, 2, 2);
  Trainer no_val({.batch_size = 4}, split, iota(20));
  EXPECT_FALSE(no_val.evaluate().validation_loss.has_value());
  split->validation = noise(6, 1, 4, 4, 2, 3);
  Trainer t({.batch_size = 4}, split, iota(20));
  const EvalStats e = t.evaluate();
  ASSERT_TRUE(e.validation_loss.has_value());
  EXPECT_GT(*e.validation_loss, 0);
  EXPECT_GE(*e.validation_accuracy, 0);
  EXPECT_THROW(Trainer({.target = "xz"}, split, iota(20)), ConfigError);
}

}  // namespace
}  // namespace psgd::nn
