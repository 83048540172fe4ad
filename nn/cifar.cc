#include "nn/cifar.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace psgd::nn {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kPixels = kCifarChannels * kCifarSide * kCifarSide;
constexpr std::int64_t kRecord = 1 + kPixels;

}  // namespace

Dataset read_cifar10(const std::vector<std::string>& paths, std::int64_t limit) {
  if (limit < 0) throw ConfigError(fmt::format("read_cifar10: negative sample limit {}", limit));
  Dataset d;
  d.channels = kCifarChannels;
  d.height = kCifarSide;
  d.width = kCifarSide;
  d.num_classes = kCifarClasses;
  std::vector<unsigned char> record(static_cast<std::size_t>(kRecord));
  for (const std::string& path : paths) {
    if (limit > 0 && static_cast<std::int64_t>(d.size()) >= limit) break;
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);
    if (ec) throw ConfigError(fmt::format("cannot open {}: {}", path, ec.message()));
    if (bytes == 0 || bytes % kRecord != 0) {
      throw ConfigError(fmt::format(
          "{} is not a CIFAR-10 binary batch: {} bytes is not a positive multiple of the "
          "{}-byte record (1 label byte + 3x32x32 pixels)",
          path, bytes, kRecord));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
    std::int64_t records = static_cast<std::int64_t>(bytes / kRecord);
    if (limit > 0) records = std::min(records, limit - static_cast<std::int64_t>(d.size()));
    const std::size_t first = d.images.size();
    d.images.resize(first + static_cast<std::size_t>(records * kPixels));
    for (std::int64_t r = 0; r < records; ++r) {
      if (!in.read(reinterpret_cast<char*>(record.data()), kRecord)) {
        throw ConfigError(fmt::format("{} is truncated at record {}", path, r));
      }
      if (record[0] >= kCifarClasses) {
        throw ConfigError(fmt::format("{}: record {} has label {}, CIFAR-10 labels are 0..9", path,
                                      r, int{record[0]}));
      }
      d.labels.push_back(record[0]);
      float* out = d.images.data() + first + static_cast<std::size_t>(r * kPixels);
      for (std::int64_t i = 0; i < kPixels; ++i)
        out[i] = static_cast<float>(record[static_cast<std::size_t>(1 + i)]) / 255.0f;
    }
  }
  return d;
}

DataSplit read_cifar10_dir(const std::string& dir, std::int64_t train_limit,
                           std::int64_t test_limit) {
  std::error_code ec;
  const fs::path root(dir);
  std::vector<std::string> train;
  for (int i = 1; i <= 5; ++i) {
    const fs::path p = root / fmt::format("data_batch_{}.bin", i);
    if (!fs::is_regular_file(p, ec)) break;
    train.push_back(p.string());
  }
  if (train.empty()) {
    throw ConfigError(
        fmt::format("CIFAR-10 directory {} has no data_batch_1.bin (expected the binary version: "
                    "data_batch_1.bin .. data_batch_5.bin and test_batch.bin)",
                    dir));
  }
  const fs::path test = root / "test_batch.bin";
  if (!fs::is_regular_file(test, ec)) {
    throw ConfigError(fmt::format("CIFAR-10 directory {} has no test_batch.bin", dir));
  }
  DataSplit split;
  split.train = read_cifar10(train, train_limit);
  split.test = read_cifar10({test.string()}, test_limit);
  split.train.name = "cifar10 train";
  split.test.name = "cifar10 test";
  return split;
}

}  // namespace psgd::nn
