// engine_loop: samples/s of one-thread training steps on Fashion-MNIST, for bench/engine_compare.py
// (which runs the same loop in Python PyTorch beside it). Prints one JSON line.
//
//   build/bench/engine_loop --model cnn [--loop trainer|libtorch] [--steps 200] [--warmup 10]
//
// --loop trainer   psgd's engine: nn::Trainer (every parameter a view into one flat tensor, the
//                  batch gathered with index_select_out into reused tensors) and psgd's SGD
//                  (core/optimizer.h) on the flat parameters -- what a worker runs per step
// --loop libtorch  the loop a libtorch user writes: the same network from nn/models.cc,
//                  torch::optim::SGD, a batch indexed out of the training tensor
// Both: batch --batch_size (128), SGD lr 0.05 momentum 0.9, one torch thread (--threads), the
// model seeded with torch::manual_seed(1); steps after --warmup untimed ones; samples/s = timed
// steps x batch / seconds. No evaluation (the loop alone).
#include <torch/torch.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/optimizer.h"
#include "nn/data_source.h"
#include "nn/models_impl.h"
#include "nn/threads.h"
#include "nn/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model = "cnn";
  std::string loop = "trainer";
  int steps = 200;
  int warmup = 10;
  int batch_size = 128;
  int threads = 1;
  std::int64_t train_samples = 10000;
  bool keep_freed_memory = true;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double trainer_loop(const Options& o, std::shared_ptr<const psgd::nn::DataSplit> data,
                    double* loss) {
  std::vector<std::int64_t> rows(data->train.size());
  std::iota(rows.begin(), rows.end(), 0);
  psgd::nn::Trainer trainer(
      psgd::nn::TrainerOptions{.model = o.model, .batch_size = o.batch_size, .seed = 1}, data,
      std::move(rows));
  auto sgd =
      psgd::make_optimizer(psgd::OptimizerSpec{.schedule = psgd::LrSchedule{0.05}, .momentum = 0.9},
                           trainer.num_parameters());
  Clock::time_point start;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    if (s == o.warmup) start = Clock::now();
    *loss = trainer.compute_gradient().loss;
    sgd->step(trainer.parameters(), trainer.gradients(), s);
  }
  return seconds_since(start);
}

double libtorch_loop(const Options& o, const psgd::nn::DataSplit& data, double* loss) {
  const psgd::nn::Dataset& d = data.train;
  torch::manual_seed(1);
  auto model = psgd::nn::make_model(o.model, d.channels, d.height, d.width, d.num_classes);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto n = static_cast<std::int64_t>(d.size());
  auto x = torch::from_blob(const_cast<float*>(d.images.data()), {n, d.channels, d.height, d.width})
               .clone();
  auto y = torch::from_blob(const_cast<std::int64_t*>(d.labels.data()), {n}, torch::kInt64).clone();
  auto order = torch::randperm(n, torch::kInt64);
  Clock::time_point start;
  std::int64_t at = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    if (s == o.warmup) start = Clock::now();
    if (at + o.batch_size > n) at = 0;
    auto idx = order.narrow(0, at, o.batch_size);
    at += o.batch_size;
    opt.zero_grad();
    auto l = torch::nn::functional::cross_entropy(model->forward(x.index_select(0, idx)),
                                                  y.index_select(0, idx));
    l.backward();
    opt.step();
    *loss = l.item<double>();
  }
  return seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "One-thread training steps of psgd's engine or a plain libtorch loop (one JSON line)"};
  app.add_option("--model", o.model, "A built-in model of nn/models.cc (mlp, cnn, resnet8, ...)");
  app.add_option("--loop", o.loop, "trainer (psgd's nn::Trainer + SGD) or libtorch (by hand)")
      ->check(CLI::IsMember({"trainer", "libtorch"}));
  app.add_option("--steps", o.steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--batch_size", o.batch_size, "Samples per step")->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "torch threads")->check(CLI::PositiveNumber);
  app.add_option("--train_samples", o.train_samples, "First N training samples (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--keep_freed_memory", o.keep_freed_memory,
                 "true: glibc keeps freed memory (nn::keep_freed_memory, what psgd's processes "
                 "do); false: glibc's defaults (the before of bench/README.md's figures)");
  CLI11_PARSE(app, argc, argv);
  try {
    psgd::nn::set_compute_threads(o.threads);
    if (o.keep_freed_memory && !psgd::nn::keep_freed_memory()) {
      fmt::print(stderr, "engine_loop: malloc refused the settings (not glibc?)\n");
    }
    auto data = std::make_shared<const psgd::nn::DataSplit>(
        psgd::nn::load_dataset("fashion-mnist", o.train_samples, 1));
    if (static_cast<std::int64_t>(data->train.size()) < o.batch_size) {
      fmt::print(stderr, "engine_loop: fewer training samples than --batch_size\n");
      return 2;
    }
    double loss = 0;
    const double s =
        o.loop == "trainer" ? trainer_loop(o, data, &loss) : libtorch_loop(o, *data, &loss);
    const nlohmann::json out{{"loop", o.loop},
                             {"model", o.model},
                             {"threads", torch::get_num_threads()},
                             {"keep_freed_memory", o.keep_freed_memory},
                             {"steps", o.steps},
                             {"batch_size", o.batch_size},
                             {"seconds", s},
                             {"samples_per_second", o.steps * o.batch_size / s},
                             {"last_loss", loss}};
    fmt::print("{}\n", out.dump());
  } catch (const std::exception& e) {
    fmt::print(stderr, "engine_loop: {}\n", e.what());
    return 2;
  }
  return 0;
}
