// The Trainer's tests: steps, batch streams, the flat-parameter model, staged backward, threads and
// the allocator. Over 400 lines because they test one translation unit (nn/trainer.cc) and share
// its fixtures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "nn/models_impl.h"
#include "nn/threads.h"
#include "nn/trainer.h"
#include "nn/trainer_impl.h"
#include "nn/version.h"
#include "tests/nn/test_dir.h"

namespace psgd::nn {
namespace {

// Two classes of 4x4 images: class 0 bright in the top half, class 1 in the bottom half, plus
// noise.
Dataset separable(int n, std::uint32_t seed) {
  Dataset d;
  d.channels = 1;
  d.height = 4;
  d.width = 4;
  d.num_classes = 2;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> noise(0.0f, 0.3f);
  for (int i = 0; i < n; ++i) {
    const int label = i % 2;
    d.labels.push_back(label);
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 4; ++x) {
        const bool bright = (y < 2) == (label == 0);
        d.images.push_back((bright ? 0.7f : 0.0f) + noise(gen));
      }
    }
  }
  return d;
}

std::shared_ptr<const DataSplit> separable_split(int train = 200, int test = 100) {
  auto split = std::make_shared<DataSplit>();
  split->train = separable(train, 1);
  split->test = separable(test, 2);
  split->train.name = "toy train";
  split->test.name = "toy test";
  return split;
}

std::vector<std::int64_t> all_indices(const Dataset& d) {
  std::vector<std::int64_t> v(d.size());
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

std::vector<float> copy_of(std::span<const float> s) {
  return {s.begin(), s.end()};
}

TEST(Trainer, ParametersAreViewsIntoTheFlatBuffers) {
  auto data = separable_split();
  Trainer t({.model = "mlp", .batch_size = 16, .seed = 3}, data, all_indices(data->train));
  auto module = TrainerAccess::module(t);

  std::size_t total = 0;
  for (const auto& p : module->parameters())
    total += static_cast<std::size_t>(p.numel());
  EXPECT_EQ(t.num_parameters(), total);
  EXPECT_EQ(t.parameters().size(), total);
  EXPECT_EQ(t.gradients().size(), total);
  EXPECT_EQ(total, 16u * 256 + 256 + 256 * 2 + 2);

  std::size_t offset = 0;
  for (const auto& p : module->parameters()) {
    EXPECT_EQ(p.data_ptr<float>(), t.parameters().data() + offset);
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().data_ptr<float>(), t.gradients().data() + offset);
    offset += static_cast<std::size_t>(p.numel());
  }

  // Gradients after a step equal the concatenation of p.grad(), and stay in place.
  const StepStats stats = t.compute_gradient();
  EXPECT_EQ(stats.samples, 16);
  EXPECT_GT(stats.loss, 0.0);
  std::vector<float> concat;
  for (const auto& p : module->parameters()) {
    ASSERT_EQ(p.grad().data_ptr<float>(), t.gradients().data() + concat.size());
    auto g = p.grad().contiguous();
    concat.insert(concat.end(), g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
  }
  EXPECT_EQ(concat, copy_of(t.gradients()));
  EXPECT_TRUE(std::any_of(concat.begin(), concat.end(), [](float g) { return g != 0.0f; }));

  // Writing through parameters() changes the model's output.
  torch::NoGradGuard no_grad;
  const auto input = torch::ones({1, 1, 4, 4});
  const auto before = module->forward(input).clone();
  for (float& v : t.parameters())
    v = 0.0f;
  const auto after = module->forward(input);
  EXPECT_FALSE(torch::allclose(before, after));
  EXPECT_TRUE(torch::equal(after, torch::zeros({1, 2})));
}

TEST(Trainer, FlatGradientMatchesPlainAutograd) {
  // batch_size >= samples: every batch is the whole set, so a plain model can redo it.
  auto data = separable_split(40, 10);
  Trainer t({.model = "mlp", .batch_size = 64, .seed = 5}, data, all_indices(data->train));
  EXPECT_EQ(t.compute_gradient().samples, 40);
  const StepStats second = t.compute_gradient();  // the buffer is zeroed, not accumulated

  torch::manual_seed(5);
  auto plain = make_model("mlp", 1, 4, 4, 2);
  const auto x = torch::from_blob(const_cast<float*>(data->train.images.data()), {40, 1, 4, 4});
  const auto y =
      torch::from_blob(const_cast<std::int64_t*>(data->train.labels.data()), {40}, torch::kInt64);
  auto loss = torch::nn::functional::cross_entropy(plain->forward(x), y);
  loss.backward();
  EXPECT_NEAR(second.loss, loss.item<double>(), 1e-6);
  std::vector<float> expected;
  for (const auto& p : plain->parameters()) {
    auto g = p.grad().contiguous();
    expected.insert(expected.end(), g.data_ptr<float>(), g.data_ptr<float>() + g.numel());
  }
  const auto got = copy_of(t.gradients());
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], expected[i], 1e-6) << i;
}

TEST(Trainer, InitialParametersDependOnTheSeed) {
  auto data = separable_split();
  Trainer a({.seed = 11}, data, {});
  Trainer b({.seed = 11}, data, {});
  Trainer c({.seed = 12}, data, {});
  EXPECT_EQ(copy_of(a.parameters()), copy_of(b.parameters()));
  EXPECT_NE(copy_of(a.parameters()), copy_of(c.parameters()));
}

TEST(Trainer, LearnsSeparableDataThroughTheFlatSpans) {
  auto data = separable_split();
  Trainer t({.model = "mlp", .batch_size = 16, .seed = 1}, data, all_indices(data->train));
  const double initial = t.evaluate().loss;
  double first_losses = 0.0;
  double last_losses = 0.0;
  constexpr float kLr = 0.1f;
  for (int step = 0; step < 100; ++step) {
    const StepStats s = t.compute_gradient();
    if (step < 10) first_losses += s.loss;
    if (step >= 90) last_losses += s.loss;
    auto params = t.parameters();
    auto grads = t.gradients();
    for (std::size_t i = 0; i < params.size(); ++i)
      params[i] -= kLr * grads[i];
  }
  EXPECT_LT(last_losses, 0.5 * first_losses);
  const EvalStats eval = t.evaluate();
  EXPECT_EQ(eval.samples, 100);
  EXPECT_LT(eval.loss, initial);
  EXPECT_GT(eval.accuracy, 0.9);
}

std::vector<double> losses(Trainer& t, int steps) {
  std::vector<double> out;
  for (int i = 0; i < steps; ++i)
    out.push_back(t.compute_gradient().loss);
  return out;
}

TEST(Trainer, BatchOrderIsDeterministicPerSeed) {
  // 20 samples in batches of 8: passes end mid-batch and continue into the next permutation.
  auto data = separable_split(20, 10);
  const auto idx = all_indices(data->train);
  Trainer a({.batch_size = 8, .seed = 4}, data, idx);
  Trainer b({.batch_size = 8, .seed = 4}, data, idx);
  Trainer c({.batch_size = 8, .seed = 4, .batch_stream = 1}, data, idx);
  EXPECT_EQ(copy_of(a.parameters()), copy_of(c.parameters()));  // same model, other batches
  const auto la = losses(a, 12);
  EXPECT_EQ(la, losses(b, 12));
  EXPECT_NE(la, losses(c, 12));
}

TEST(Trainer, SkippedBatchesContinueTheSameBatchOrder) {
  // A worker that resumes after k batches (skip_batches) computes the gradient the (k+1)-th
  // compute_gradient() of an uninterrupted worker computes, for k across pass boundaries, with
  // one stream and with per-block streams.
  auto data = separable_split(20, 10);
  const auto idx = all_indices(data->train);
  for (int k : {0, 1, 2, 3, 5, 7}) {
    Trainer whole({.batch_size = 8, .seed = 4, .batch_stream = 3}, data, idx);
    Trainer resumed({.batch_size = 8, .seed = 4, .batch_stream = 3}, data, idx);
    for (int i = 0; i < k; ++i)
      whole.compute_gradient();
    resumed.skip_batches(k);
    for (int i = 0; i < 3; ++i) {
      whole.compute_gradient();
      resumed.compute_gradient();
      EXPECT_EQ(copy_of(whole.gradients()), copy_of(resumed.gradients())) << k << " " << i;
    }
    TrainerOptions blocks{.batch_size = 4, .seed = 4, .block_ids = {3, 7}, .block_sizes = {12, 8}};
    Trainer whole_blocks(blocks, data, idx);
    Trainer resumed_blocks(blocks, data, idx);
    for (int i = 0; i < k; ++i)
      whole_blocks.compute_gradient();
    resumed_blocks.skip_batches(k);
    whole_blocks.compute_gradient();
    resumed_blocks.compute_gradient();
    EXPECT_EQ(copy_of(whole_blocks.gradients()), copy_of(resumed_blocks.gradients())) << k;
  }
  // Skipping is not a no-op: after one skipped batch the next gradient differs.
  Trainer a({.batch_size = 8, .seed = 4}, data, idx);
  Trainer b({.batch_size = 8, .seed = 4}, data, idx);
  b.skip_batches(1);
  a.compute_gradient();
  b.compute_gradient();
  EXPECT_NE(copy_of(a.gradients()), copy_of(b.gradients()));
}

TEST(Trainer, BlockStreamsAgreeAcrossReplicasOfABlock) {
  // Worker a holds blocks 3 and 7 (samples 0..9, 10..19), worker b block 7 alone with another
  // batch stream: a's batches alternate between its blocks, and its batches of block 7 are b's.
  auto data = separable_split(20, 10);
  std::vector<std::int64_t> a_idx(20), b_idx(10);
  std::iota(a_idx.begin(), a_idx.end(), 0);
  std::iota(b_idx.begin(), b_idx.end(), 10);
  Trainer a(
      {.batch_size = 4, .seed = 4, .batch_stream = 1, .block_ids = {3, 7}, .block_sizes = {10, 10}},
      data, a_idx);
  Trainer b({.batch_size = 4, .seed = 4, .batch_stream = 2, .block_ids = {7}, .block_sizes = {10}},
            data, b_idx);
  for (int step = 0; step < 6; ++step) {  // passes of block 7 end mid-batch
    EXPECT_EQ(a.compute_gradient().samples, 4);
    a.compute_gradient();
    b.compute_gradient();
    EXPECT_EQ(copy_of(a.gradients()), copy_of(b.gradients())) << step;
  }
  EXPECT_THROW(Trainer({.block_ids = {1}, .block_sizes = {3}}, data, a_idx), ConfigError);
  EXPECT_THROW(Trainer({.block_ids = {1, 2}, .block_sizes = {20}}, data, a_idx), ConfigError);
}

TEST(Trainer, FewSamplesUseTheWholeSet) {
  auto data = separable_split(5, 10);
  Trainer t({.batch_size = 128}, data, {0, 2, 4});
  EXPECT_EQ(t.num_train_samples(), 3u);
  EXPECT_EQ(t.compute_gradient().samples, 3);
}

TEST(Trainer, EvaluationOnlyAndEmptyTestSet) {
  auto data = separable_split();
  Trainer eval_only({}, data, {});
  EXPECT_THROW(eval_only.compute_gradient(), Error);
  EXPECT_EQ(eval_only.evaluate().samples, 100);

  auto no_test = std::make_shared<DataSplit>();
  no_test->train = separable(10, 1);
  Trainer t({}, no_test, all_indices(no_test->train));
  const EvalStats e = t.evaluate();
  EXPECT_EQ(e.samples, 0);
  EXPECT_EQ(e.loss, 0.0);
  EXPECT_EQ(e.accuracy, 0.0);
}

TEST(Trainer, SaveWritesModelAndStateDict) {
  auto data = separable_split();
  Trainer t({.seed = 9}, data, all_indices(data->train));
  testing::TempDir dir;
  const auto out = dir.path() / "run" / "model";
  t.save(out.string());
  ASSERT_TRUE(std::filesystem::exists(out / "model.pt"));
  ASSERT_TRUE(std::filesystem::exists(out / "state_dict.pt"));
  EXPECT_GT(std::filesystem::file_size(out / "model.pt"), 0u);
  EXPECT_GT(std::filesystem::file_size(out / "state_dict.pt"), 0u);

  // The archive loads back into the same architecture with the same values.
  auto loaded = make_model("mlp", 1, 4, 4, 2);
  torch::load(loaded, (out / "model.pt").string());
  std::vector<float> values;
  for (const auto& p : loaded->parameters()) {
    auto c = p.contiguous();
    values.insert(values.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  EXPECT_EQ(values, copy_of(t.parameters()));

  // The state dict is a pickled {name: tensor} dict with Python nn.Sequential's names.
  std::ifstream in(out / "state_dict.pt", std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const auto dict = torch::pickle_load(bytes).toGenericDict();
  ASSERT_EQ(dict.size(), 4u);
  std::size_t offset = 0;
  for (const char* name : {"1.weight", "1.bias", "3.weight", "3.bias"}) {
    ASSERT_TRUE(dict.contains(name)) << name;
    const auto tensor = dict.at(name).toTensor().contiguous();
    const std::vector<float> got(tensor.data_ptr<float>(),
                                 tensor.data_ptr<float>() + tensor.numel());
    const std::vector<float> want(values.begin() + offset, values.begin() + offset + got.size());
    EXPECT_EQ(got, want) << name;
    offset += got.size();
  }
  EXPECT_EQ(offset, values.size());
}

TEST(Trainer, CnnRunsOnMnistShapedInput) {
  auto data = std::make_shared<DataSplit>();
  for (Dataset* d : {&data->train, &data->test}) {
    d->height = d->width = 28;
    d->num_classes = 10;
    for (int i = 0; i < 8; ++i) {
      d->labels.push_back(i % 10);
      for (int p = 0; p < 784; ++p)
        d->images.push_back(static_cast<float>((p * (i + 1)) % 255) / 255);
    }
  }
  Trainer cnn({.model = "cnn", .batch_size = 4}, data, all_indices(data->train));
  const StepStats s = cnn.compute_gradient();
  EXPECT_EQ(s.samples, 4);
  EXPECT_TRUE(std::isfinite(s.loss));
  EXPECT_EQ(cnn.num_parameters(),
            (16u * 25 + 16) + (32u * 16 * 25 + 32) + (32u * 49 * 128 + 128) + (128u * 10 + 10));
  EXPECT_EQ(cnn.evaluate().samples, 8);

  Trainer mlp({.model = "mlp"}, data, {});
  EXPECT_EQ(mlp.describe(), "mlp: 203,530 parameters");
}

TEST(Trainer, RejectsBadConfiguration) {
  auto data = separable_split(10, 10);
  EXPECT_THROW(Trainer({.model = "resnet"}, data, {}), ConfigError);
  EXPECT_THROW(Trainer({.batch_size = 0}, data, {}), ConfigError);
  EXPECT_THROW(Trainer({.device = "cuda"}, data, {}), ConfigError);
  EXPECT_THROW(Trainer({.device = "tpu"}, data, {}), ConfigError);
  EXPECT_THROW(Trainer({}, data, {0, 10}), ConfigError);
  EXPECT_THROW(Trainer({}, nullptr, {}), ConfigError);
  EXPECT_NO_THROW(Trainer({.device = "cpu"}, data, {}));
}

// keep_freed_memory (nn/threads.h): a block of a batch's size, or of an evaluation chunk's, comes
// from the heap, not from a fresh mapping that free() would hand back to the kernel
// (mallinfo2().hblkhd: bytes in mmapped blocks).
TEST(Threads, KeepFreedMemoryServesBatchSizedBlocksFromTheHeap) {
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  GTEST_SKIP() << "glibc's own malloc only";
#else
  ASSERT_TRUE(keep_freed_memory());
  const auto before = ::mallinfo2().hblkhd;
  void* block = std::malloc(std::size_t{8} << 20);
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(::mallinfo2().hblkhd, before) << "an 8 MB block was mmapped";
  std::free(block);
  // Above the largest mmap threshold glibc accepts (32 MB): the CNN's evaluation chunk needs 50 MB.
  void* big = std::malloc(std::size_t{64} << 20);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(::mallinfo2().hblkhd, before) << "a 64 MB block was mmapped";
  std::free(big);
#endif
}

TEST(Threads, SetsTorchThreadsAndReportsBlas) {
  set_compute_threads(1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  set_compute_threads(1);  // a second call must not throw
  EXPECT_GE(default_threads(1), 1);
  EXPECT_EQ(default_threads(1 << 20), 1);
  const std::string info = blas_info();
  EXPECT_FALSE(info.empty());
  if (has_openblas()) {
    EXPECT_EQ(info.rfind("openblas (", 0), 0u) << info;
  }
  if (has_openblas()) {
    EXPECT_EQ(info, "openblas (" + blas_description() + ")");
  } else {
    EXPECT_NE(blas_description().find("libopenblas0-pthread"), std::string::npos);
  }
  EXPECT_EQ(torch_version().rfind(std::to_string(TORCH_VERSION_MAJOR) + ".", 0), 0u);
  std::cout << "torch " << torch_version() << ", BLAS: " << blas_description() << "\n";
}

// Staged backward (allreduce --overlap): paused before every layer with parameters, the backward
// pass gives the gradient of one compute_gradient() bit for bit, step after step, and each pause
// reports the offset from which the gradient is final, decreasing to 0.
TEST(Trainer, StagedBackwardGivesTheSameGradientBits) {
  auto data = std::make_shared<DataSplit>();
  for (Dataset* d : {&data->train, &data->test}) {
    d->height = d->width = 28;
    d->num_classes = 10;
    for (int i = 0; i < 16; ++i) {
      d->labels.push_back(i % 10);
      for (int p = 0; p < 784; ++p)
        d->images.push_back(static_cast<float>((p * (i + 3)) % 251) / 251);
    }
  }
  for (const char* model : {"mlp", "cnn", "resnet8"}) {
    SCOPED_TRACE(model);
    Trainer whole({.model = model, .batch_size = 8, .seed = 4}, data, all_indices(data->train));
    Trainer staged({.model = model, .batch_size = 8, .seed = 4}, data, all_indices(data->train));
    const std::vector<std::size_t> cuts = staged.backward_cuts();
    ASSERT_FALSE(cuts.empty());
    EXPECT_TRUE(std::is_sorted(cuts.rbegin(), cuts.rend()));
    const auto sizes = staged.tensor_sizes();
    for (int step = 0; step < 3; ++step) {
      const StepStats a = whole.compute_gradient();
      // Every cut the first step, every other one after: any subset works.
      std::vector<std::size_t> some;
      for (std::size_t i = 0; i < cuts.size(); ++i)
        if (step == 0 || i % 2 == 0) some.push_back(cuts[i]);
      const StepStats b = staged.begin_gradient(some);
      EXPECT_EQ(a.loss, b.loss);
      EXPECT_EQ(a.samples, b.samples);
      std::vector<std::size_t> reported;
      for (std::size_t ready = 1; ready > 0;) {
        ready = staged.continue_backward();
        reported.push_back(ready);
        ASSERT_LE(reported.size(), some.size() + 1);
      }
      some.push_back(0);
      EXPECT_EQ(reported, some);
      const auto ga = copy_of(whole.gradients());
      const auto gb = copy_of(staged.gradients());
      ASSERT_EQ(ga.size(), gb.size());
      EXPECT_EQ(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(float)), 0) << "step " << step;
      // The same update on both keeps the parameters equal for the next step.
      for (Trainer* t : {&whole, &staged}) {
        auto p = t->parameters();
        const auto g = t->gradients();
        for (std::size_t i = 0; i < p.size(); ++i)
          p[i] -= 0.05f * g[i];
      }
    }
    EXPECT_GT(sizes.size(), 1u);
  }
}

// allreduce --overlap computes its staged steps on the client's compute thread
// (experiments/client/compute_thread.h) while the event thread delivers messages: torch's
// per-thread state there (grad mode, the intra-op thread count, which a new thread takes lazily
// from the process-wide setting) must give the event thread's bits. Each piece on a new thread,
// the harder case, with two intra-op threads.
TEST(Trainer, StagedBackwardOnAnotherThreadGivesTheSameBits) {
  auto data = std::make_shared<DataSplit>();
  for (Dataset* d : {&data->train, &data->test}) {
    d->height = d->width = 28;
    d->num_classes = 10;
    for (int i = 0; i < 16; ++i) {
      d->labels.push_back(i % 10);
      for (int p = 0; p < 784; ++p)
        d->images.push_back(static_cast<float>((p * (i + 5)) % 241) / 241);
    }
  }
  const int threads = torch::get_num_threads();
  set_compute_threads(2);
  for (const char* model : {"mlp", "cnn", "resnet8"}) {
    SCOPED_TRACE(model);
    Trainer here({.model = model, .batch_size = 8, .seed = 6}, data, all_indices(data->train));
    Trainer there({.model = model, .batch_size = 8, .seed = 6}, data, all_indices(data->train));
    const std::vector<std::size_t> cuts = there.backward_cuts();
    for (int step = 0; step < 2; ++step) {
      const StepStats a = here.begin_gradient(cuts);
      while (here.continue_backward() > 0) {
      }
      StepStats b;
      int seen_threads = 0;
      std::async(std::launch::async, [&] {
        b = there.begin_gradient(cuts);
        seen_threads = torch::get_num_threads();
      }).get();
      for (std::size_t ready = 1; ready > 0;)
        std::async(std::launch::async, [&] { ready = there.continue_backward(); }).get();
      EXPECT_EQ(seen_threads, torch::get_num_threads());
      EXPECT_EQ(a.loss, b.loss);
      const auto ga = copy_of(here.gradients());
      const auto gb = copy_of(there.gradients());
      ASSERT_EQ(ga.size(), gb.size());
      EXPECT_EQ(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(float)), 0) << "step " << step;
      for (Trainer* t : {&here, &there}) {
        auto p = t->parameters();
        const auto g = t->gradients();
        for (std::size_t i = 0; i < p.size(); ++i)
          p[i] -= 0.05f * g[i];
      }
    }
  }
  set_compute_threads(threads);
}

}  // namespace
}  // namespace psgd::nn
