// ssgd_vs_plain: samples/s of a 1-worker psgd ssgd run against a plain libtorch training loop on
// the same model, batch and data, measured in one run so the figure is a ratio.
//
//   build/bench/ssgd_vs_plain [--epochs 3] [--batch_size 128] [--model mlp] [--repeats 3]
//   build/bench/ssgd_vs_plain --plain_only [--epochs 2]   # the yardstick alone, one JSON line
//   build/bench/ssgd_vs_plain --plain_only --start_together DIR --together 2   # x2, side by side
//
// Both sides: one torch thread, SGD (lr 0.05, momentum 0.9), Fashion-MNIST, one evaluation on the
// test set per epoch; samples/s = training samples / wall time from the first step to the last
// evaluation. psgd's figure is summary.json's samples_per_second of `init_server --node_count 1`
// with one `client`, each run as its own process (the psgd side pays for its round trip to the
// server and the server's optimiser step: that is what is measured). psgd runs twice per repeat:
// with its default transport (the worker is on the server's machine, so frames go through shared
// memory) and with `--shared_memory off` (every frame over loopback TCP). The plain loop runs
// with nn::keep_freed_memory() as every psgd process that trains does (the Trainer's malloc
// settings), so the ratio compares the loops and not glibc's defaults.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "nn/data_source.h"
#include "nn/threads.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  int epochs = 3;
  int batch_size = 128;
  std::string model = "mlp";
  int repeats = 3;
  bool plain_only = false;
  std::int64_t train_samples = 0;
  std::int64_t test_samples = 0;
  std::string bin_dir = PSGD_BIN_DIR;
  // --start_together DIR --together N: N --plain_only processes start their first step at once.
  std::string start_together;
  int together = 1;
  // > 0: a fourth side, shared memory with init_server --busy_poll_us this many microseconds.
  int busy_poll_us = 0;
};

// Announces this process in dir and waits (up to 120 s) until `count` processes have: several
// copies of the plain loop started side by side (bench/ddp_compare.py's concurrent limit) then
// time the same seconds, not their data loading. False on timeout.
bool wait_for_peers(const std::string& dir, int count) {
  const fs::path mine = fs::path(dir) / ("ready." + std::to_string(getpid()));
  std::ofstream(mine) << "ready\n";
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    int ready = 0;
    for (const auto& entry : fs::directory_iterator(dir))
      ready += entry.path().filename().string().rfind("ready.", 0) == 0 ? 1 : 0;
    if (ready >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

torch::nn::Sequential build(const std::string& name) {
  namespace tnn = torch::nn;
  if (name == "mlp") {
    return tnn::Sequential(tnn::Flatten(), tnn::Linear(784, 256), tnn::ReLU(),
                           tnn::Linear(256, 10));
  }
  return tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(1, 16, 5).padding(2)), tnn::ReLU(),
                         tnn::MaxPool2d(2), tnn::Conv2d(tnn::Conv2dOptions(16, 32, 5).padding(2)),
                         tnn::ReLU(), tnn::MaxPool2d(2), tnn::Flatten(),
                         tnn::Linear(32 * 7 * 7, 128), tnn::ReLU(), tnn::Linear(128, 10));
}

// The yardstick: the loop a libtorch user writes by hand.
double plain_loop(const Options& o, const psgd::nn::DataSplit& data, double* accuracy) {
  torch::manual_seed(1);
  auto model = build(o.model);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto n = static_cast<std::int64_t>(data.train.size());
  auto x = torch::from_blob(const_cast<float*>(data.train.images.data()), {n, 1, 28, 28}).clone();
  auto y = torch::from_blob(const_cast<std::int64_t*>(data.train.labels.data()), {n}, torch::kInt64)
               .clone();
  const auto nt = static_cast<std::int64_t>(data.test.size());
  auto tx = torch::from_blob(const_cast<float*>(data.test.images.data()), {nt, 1, 28, 28}).clone();
  auto ty =
      torch::from_blob(const_cast<std::int64_t*>(data.test.labels.data()), {nt}, torch::kInt64)
          .clone();
  std::int64_t samples = 0;
  const auto start = Clock::now();
  for (int e = 0; e < o.epochs; ++e) {
    auto perm = torch::randperm(n, torch::kInt64);
    for (std::int64_t i = 0; i + o.batch_size <= n; i += o.batch_size) {
      auto idx = perm.narrow(0, i, o.batch_size);
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(x.index_select(0, idx)),
                                                       y.index_select(0, idx));
      loss.backward();
      opt.step();
      samples += o.batch_size;
    }
    torch::NoGradGuard guard;
    *accuracy = model->forward(tx).argmax(1).eq(ty).to(torch::kFloat).mean().item<double>();
  }
  return samples / std::chrono::duration<double>(Clock::now() - start).count();
}

pid_t spawn(const std::string& program, std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), program);
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (posix_spawn(&pid, program.c_str(), &fa, nullptr, argv.data(), environ) != 0) {
    throw std::runtime_error("cannot start " + program);
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

double psgd_run(const Options& o, const fs::path& dir, bool shared_memory, int busy_poll_us,
                double* accuracy) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string port_file = (dir / "port").string();
  std::vector<std::string> args = {"--node_count",    "1",
                                   "--epochs",        std::to_string(o.epochs),
                                   "--batch_size",    std::to_string(o.batch_size),
                                   "--model",         o.model,
                                   "--learn_rate",    "0.05",
                                   "--momentum",      "0.9",
                                   "--working_ports", "0",
                                   "--bind",          "127.0.0.1",
                                   "--port_file",     port_file,
                                   "--output",        (dir / "run").string(),
                                   "--shared_memory", shared_memory ? "on" : "off",
                                   "--busy_poll_us",  std::to_string(busy_poll_us)};
  if (o.train_samples > 0)
    args.insert(args.end(), {"--train_samples", std::to_string(o.train_samples)});
  if (o.test_samples > 0)
    args.insert(args.end(), {"--test_samples", std::to_string(o.test_samples)});
  pid_t server = spawn(o.bin_dir + "/init_server", args, (dir / "server.log").string());
  std::string port;
  for (int i = 0; i < 600 && port.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(port_file);
    std::getline(in, port);
  }
  if (port.empty()) throw std::runtime_error("init_server did not start; see " + dir.string());
  pid_t client = spawn(o.bin_dir + "/client", {"--port", port, "--threads", "1"},
                       (dir / "client.log").string());
  if (wait_exit(server) != 0 || wait_exit(client) != 0) {
    throw std::runtime_error("psgd run failed; see " + dir.string());
  }
  std::ifstream in(dir / "run" / "summary.json");
  auto s = nlohmann::json::parse(in);
  *accuracy = s["final_test_accuracy"];
  return s["samples_per_second"];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"1-worker psgd ssgd against a plain libtorch loop (samples/s ratio)"};
  app.add_option("--epochs", o.epochs, "Epochs per run")->capture_default_str();
  app.add_option("--batch_size", o.batch_size, "Batch size")->capture_default_str();
  app.add_option("--model", o.model, "mlp or cnn")->capture_default_str();
  app.add_option("--repeats", o.repeats, "Runs of each side; the median is reported")
      ->capture_default_str();
  app.add_option("--bin_dir", o.bin_dir, "Where init_server and client are")->capture_default_str();
  app.add_flag("--plain_only", o.plain_only,
               "Run only the plain loop (the one-thread yardstick bench/ddp_compare.py uses) and "
               "print one JSON line: samples_per_second (median of --repeats), test_accuracy");
  app.add_option("--train_samples", o.train_samples, "Use the first N training samples (0: all)")
      ->capture_default_str();
  app.add_option("--test_samples", o.test_samples, "Use the first N test samples (0: all)")
      ->capture_default_str();
  app.add_option("--start_together", o.start_together,
                 "With --plain_only and --together N: a directory in which N copies of this "
                 "program meet after loading their data, so that their loops run side by side "
                 "(bench/ddp_compare.py's measured compute limit)");
  app.add_option("--together", o.together, "How many copies meet in --start_together")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--busy_poll_us", o.busy_poll_us,
                 "Also run psgd with shared memory and init_server --busy_poll_us N (0: not)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!o.start_together.empty() && (!o.plain_only || !fs::is_directory(o.start_together))) {
    std::fprintf(stderr,
                 "ssgd_vs_plain: --start_together needs --plain_only and an existing directory "
                 "(got '%s')\n",
                 o.start_together.c_str());
    return 2;
  }

  psgd::nn::set_compute_threads(1);
  // Like init_server and client: freed activations stay in the process between steps.
  psgd::nn::keep_freed_memory();
  const auto data = psgd::nn::load_dataset("fashion-mnist", o.train_samples, o.test_samples);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  if (o.plain_only) {
    std::vector<double> plain;
    double accuracy = 0;
    if (!o.start_together.empty() && !wait_for_peers(o.start_together, o.together)) {
      std::fprintf(stderr, "ssgd_vs_plain: fewer than %d copies reached %s within 120 s\n",
                   o.together, o.start_together.c_str());
      return 2;
    }
    for (int r = 0; r < o.repeats; ++r)
      plain.push_back(plain_loop(o, data, &accuracy));
    std::printf("%s\n", nlohmann::json{{"system", "plain"},
                                       {"workers", 1},
                                       {"threads_per_process", 1},
                                       {"model", o.model},
                                       {"epochs", o.epochs},
                                       {"batch_size", o.batch_size},
                                       {"repeats", o.repeats},
                                       {"samples_per_second", median(plain)},
                                       {"test_accuracy", accuracy}}
                            .dump()
                            .c_str());
    return 0;
  }
  const fs::path tmp = fs::temp_directory_path() / ("psgd-bench-" + std::to_string(getpid()));
  std::vector<double> plain, shm, tcp, poll;
  double plain_acc = 0, shm_acc = 0, tcp_acc = 0, poll_acc = 0;
  // Interleaved so that drift in the machine's speed affects every side alike.
  for (int r = 0; r < o.repeats; ++r) {
    plain.push_back(plain_loop(o, data, &plain_acc));
    shm.push_back(psgd_run(o, tmp / fmt::format("{}-shm", r), true, 0, &shm_acc));
    tcp.push_back(psgd_run(o, tmp / fmt::format("{}-tcp", r), false, 0, &tcp_acc));
    if (o.busy_poll_us > 0) {
      poll.push_back(psgd_run(o, tmp / fmt::format("{}-poll", r), true, o.busy_poll_us, &poll_acc));
    }
    std::printf(
        "repeat %d: plain %.0f samples/s, psgd ssgd 1 worker %.0f (shared memory), %.0f (TCP)",
        r + 1, plain.back(), shm.back(), tcp.back());
    if (!poll.empty()) std::printf(", %.0f (shared memory, busy polling)", poll.back());
    std::printf("\n");
    std::fflush(stdout);
  }
  fs::remove_all(tmp);
  const double p = median(plain), s = median(shm), t = median(tcp);
  std::printf("\n%-40s %12s %10s %8s\n", "", "samples/s", "accuracy", "ratio");
  std::printf("%-40s %12.0f %9.2f%% %8s\n", "plain libtorch loop", p, 100 * plain_acc, "1");
  std::printf("%-40s %12.0f %9.2f%% %8.3f\n", "psgd ssgd, 1 worker (shared memory)", s,
              100 * shm_acc, s / p);
  std::printf("%-40s %12.0f %9.2f%% %8.3f\n", "psgd ssgd, 1 worker (TCP)", t, 100 * tcp_acc, t / p);
  if (!poll.empty()) {
    const double b = median(poll);
    std::printf("%-40s %12.0f %9.2f%% %8.3f\n",
                fmt::format("  the same, --busy_poll_us {}", o.busy_poll_us).c_str(), b,
                100 * poll_acc, b / p);
  }
  std::printf(
      "ratio psgd / plain: %.3f with shared memory, %.3f over TCP   (model %s, batch %d, "
      "%d epochs, median of %d)\n",
      s / p, t / p, o.model.c_str(), o.batch_size, o.epochs, o.repeats);
  return 0;
}
