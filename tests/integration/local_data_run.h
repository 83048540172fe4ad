#pragma once
// What the --local_data tests share (local_data_test.cc, local_data_runs_test.cc): workers' own
// files cut from Fashion-MNIST's training split (IDX directories and CSV files), and a run of a
// real init_server --local_data with one client per file, each started by hand in a directory of
// its own with its own --dataset.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nn/data_source.h"
#include "tests/integration/process.h"

namespace psgd::testing {

using namespace std::chrono_literals;

inline void put_be32(std::ofstream& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.write(b, 4);
}

// Writes rows `rows` of `d` (8-bit images read as pixel / 255) as IDX files `prefix`-images-idx3-
// ubyte and `prefix`-labels-idx1-ubyte in `dir`.
inline void write_idx(const std::string& dir, const std::string& prefix, const nn::Dataset& d,
                      const std::vector<std::int64_t>& rows) {
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  put_be32(images, 0x803);
  put_be32(images, static_cast<std::uint32_t>(rows.size()));
  put_be32(images, static_cast<std::uint32_t>(d.height));
  put_be32(images, static_cast<std::uint32_t>(d.width));
  const auto numel = static_cast<std::size_t>(d.sample_numel());
  for (std::int64_t r : rows) {
    for (std::size_t k = 0; k < numel; ++k) {
      const float v = d.images[static_cast<std::size_t>(r) * numel + k];
      images.put(static_cast<char>(static_cast<std::uint8_t>(std::lround(v * 255))));
    }
  }
  std::ofstream labels(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_be32(labels, 0x801);
  put_be32(labels, static_cast<std::uint32_t>(rows.size()));
  for (std::int64_t r : rows)
    labels.put(static_cast<char>(d.labels[static_cast<std::size_t>(r)]));
}

struct WorkerFile {
  std::string spec;                     // idx:DIR
  std::vector<std::int64_t> histogram;  // what the test wrote, per class 0..9
};

// An IDX directory of `count` training rows of Fashion-MNIST whose label is in [lo, hi], plus
// `leaked` rows of its test set (the first ones); its own t10k files (which a --local_data
// worker does not train on) hold 10 rows of other classes.
inline WorkerFile make_worker_dir(const TempDir& tmp, const std::string& name,
                                  const nn::DataSplit& fm, int lo, int hi, int count,
                                  int leaked = 0) {
  const std::string dir = tmp.file(name);
  std::filesystem::create_directories(dir);
  std::vector<std::int64_t> rows, others;
  WorkerFile f{.spec = "idx:" + dir, .histogram = std::vector<std::int64_t>(10, 0)};
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(fm.train.size()); ++i) {
    const auto label = fm.train.labels[static_cast<std::size_t>(i)];
    if (label >= lo && label <= hi && static_cast<int>(rows.size()) < count) {
      rows.push_back(i);
      ++f.histogram[static_cast<std::size_t>(label)];
    } else if ((label < lo || label > hi) && others.size() < 10) {
      others.push_back(i);
    }
  }
  if (leaked > 0) {
    // The leaked rows go into the training files: append them as rows of a combined set.
    nn::Dataset combined = fm.train;
    std::vector<std::int64_t> all = rows;
    for (int t = 0; t < leaked; ++t) {
      const std::size_t numel = static_cast<std::size_t>(fm.test.sample_numel());
      combined.images.insert(combined.images.end(),
                             fm.test.images.begin() + static_cast<std::ptrdiff_t>(t * numel),
                             fm.test.images.begin() + static_cast<std::ptrdiff_t>((t + 1) * numel));
      combined.labels.push_back(fm.test.labels[static_cast<std::size_t>(t)]);
      ++f.histogram[static_cast<std::size_t>(fm.test.labels[static_cast<std::size_t>(t)])];
      all.push_back(static_cast<std::int64_t>(combined.labels.size()) - 1);
    }
    write_idx(dir, "train", combined, all);
  } else {
    write_idx(dir, "train", fm.train, rows);
  }
  write_idx(dir, "t10k", fm.train, others);
  return f;
}

// A CSV file of `count` training rows of Fashion-MNIST whose label is in [lo, hi], as a
// researcher exports them: a header, each row's first `features` pixels (pixel / 255, 6
// significant digits; all 784 unless fewer are asked for), the label last.
inline WorkerFile make_worker_csv(const TempDir& tmp, const std::string& name,
                                  const nn::DataSplit& fm, int lo, int hi, int count,
                                  std::size_t features = 784) {
  const std::string path = tmp.file(name + ".csv");
  WorkerFile f{.spec = "csv:" + path, .histogram = std::vector<std::int64_t>(10, 0)};
  std::ofstream out(path);
  for (std::size_t k = 0; k < features; ++k)
    out << "pixel" << k << ",";
  out << "label\n";
  const auto numel = static_cast<std::size_t>(fm.train.sample_numel());
  int written = 0;
  for (std::size_t i = 0; i < fm.train.size() && written < count; ++i) {
    const auto label = fm.train.labels[i];
    if (label < lo || label > hi) continue;
    for (std::size_t k = 0; k < features; ++k)
      out << fm.train.images[i * numel + k] << ",";
    out << label << "\n";
    ++f.histogram[static_cast<std::size_t>(label)];
    ++written;
  }
  return f;
}

inline const nn::DataSplit& fashion_mnist() {
  static const nn::DataSplit split = nn::load_dataset("fashion-mnist");
  return split;
}

struct LocalRun {
  TempDir dir;
  std::unique_ptr<Process> server;
  std::vector<std::unique_ptr<Process>> clients;

  // The server (Fashion-MNIST's test set, its first 2000 rows), then one client per dataset, each
  // started by hand in an empty directory of its own with its own --dataset.
  void start(const std::vector<std::string>& datasets, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--local_data",
                                  "--node_count",
                                  std::to_string(datasets.size()),
                                  "--working_ports",
                                  "0",
                                  "--port_file",
                                  dir.file("port"),
                                  "--output",
                                  dir.file("run"),
                                  "--bind",
                                  "127.0.0.1",
                                  "--join_timeout",
                                  "60",
                                  "--io_timeout",
                                  "30",
                                  "--test_samples",
                                  "2000",
                                  "--batch_size",
                                  "32"};
    // 2 epochs unless `extra` says otherwise.
    if (std::find(extra.begin(), extra.end(), "--epochs") == extra.end())
      extra.insert(extra.end(), {"--epochs", "2"});
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<Process>(PSGD_INIT_SERVER, args, dir.file("server.out"),
                                       dir.file("server.err"));
    const int port = wait_for_port(dir.file("port"), *server);
    ASSERT_GT(port, 0) << server->out() << server->err();
    for (std::size_t i = 0; i < datasets.size(); ++i) {
      const std::string cwd = dir.file("client" + std::to_string(i));
      std::filesystem::create_directories(cwd);
      clients.push_back(std::make_unique<Process>(
          PSGD_CLIENT,
          std::vector<std::string>{"--ip", "127.0.0.1", "--port", std::to_string(port),
                                   "--connect_timeout", "10", "--dataset", datasets[i]},
          cwd + ".out", cwd + ".err", cwd));
    }
  }

  std::string logs() const {
    std::string s = "--- server\n" + server->out() + server->err();
    for (std::size_t i = 0; i < clients.size(); ++i)
      s += "--- client " + std::to_string(i) + "\n" + clients[i]->out() + clients[i]->err();
    return s;
  }

  // Waits for the server (it must end, whatever its status) and returns its exit code.
  int wait_server() {
    const auto code = server->wait(180s);
    EXPECT_TRUE(code.has_value()) << "server hung\n" << logs();
    return code.value_or(-1);
  }
};

}  // namespace psgd::testing
