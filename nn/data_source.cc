#include "nn/data_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "nn/idx.h"

namespace psgd::nn {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// DIR/NAME.gz if present, else DIR/NAME; a ConfigError naming both when neither exists.
std::string find_idx_file(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  for (const fs::path& candidate : {dir / (name + ".gz"), dir / name}) {
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
  }
  throw ConfigError(
      fmt::format("dataset directory {} has neither {} nor {}.gz", dir.string(), name, name));
}

DataSplit load_idx_dir(const std::string& label, const fs::path& dir, std::int64_t train_limit,
                       std::int64_t test_limit) {
  // Look every file up first (in this order) so a missing one is reported before any reading.
  const std::string train_images = find_idx_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_idx_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_idx_file(dir, "t10k-labels-idx1-ubyte");
  DataSplit split;
  split.train = read_idx(train_images, train_labels, train_limit);
  split.test = read_idx(test_images, test_labels, test_limit);
  if (split.train.height != split.test.height || split.train.width != split.test.width) {
    throw ConfigError(fmt::format("{}: train images are {}x{} but test images are {}x{}",
                                  dir.string(), split.train.height, split.train.width,
                                  split.test.height, split.test.width));
  }
  const int classes = std::max(split.train.num_classes, split.test.num_classes);
  split.train.num_classes = split.test.num_classes = classes;
  split.train.name = label + " train";
  split.test.name = label + " test";
  return split;
}

}  // namespace

DataSplit load_dataset(const std::string& spec, std::int64_t train_limit, std::int64_t test_limit) {
  std::error_code ec;
  if (spec == "fashion-mnist") {
    const char* env = std::getenv("PSGD_FASHION_MNIST_DIR");
    const fs::path dir = env != nullptr && *env != '\0' ? env : kFashionMnistDir;
    if (!fs::is_directory(dir, ec)) {
      throw ConfigError(fmt::format(
          "Fashion-MNIST not found in {}: install Debian's dataset-fashion-mnist package "
          "(scripts/setup.sh does), set PSGD_FASHION_MNIST_DIR, or use --dataset mnist:DIR",
          dir.string()));
    }
    return load_idx_dir("fashion-mnist", dir, train_limit, test_limit);
  }
  for (const std::string prefix : {"mnist:", "idx:"}) {
    if (spec.starts_with(prefix)) {
      const fs::path dir = spec.substr(prefix.size());
      if (dir.empty() || !fs::is_directory(dir, ec)) {
        throw ConfigError(
            fmt::format("dataset {}: directory '{}' does not exist", spec, dir.string()));
      }
      return load_idx_dir(prefix.substr(0, prefix.size() - 1), dir, train_limit, test_limit);
    }
  }
  throw ConfigError(fmt::format(
      "unknown dataset '{}': expected fashion-mnist, mnist:DIR or idx:DIR (a directory of "
      "MNIST-format IDX files)",
      spec));
}

std::string describe(const Dataset& d) {
  return fmt::format("{}: {} samples of {}x{}x{}, {} classes", d.name.empty() ? "dataset" : d.name,
                     d.size(), d.channels, d.height, d.width, d.num_classes);
}

}  // namespace psgd::nn
