#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/data_source.h"
#include "nn/idx.h"
#include "tests/nn/test_dir.h"

namespace psgd::nn {
namespace {

using testing::TempDir;

void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<unsigned char>(v >> shift));
}

std::vector<unsigned char> idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols,
                                      const std::vector<unsigned char>& pixels,
                                      std::uint32_t magic = 0x00000803) {
  std::vector<unsigned char> out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

std::vector<unsigned char> idx_labels(std::uint32_t count,
                                      const std::vector<unsigned char>& labels) {
  std::vector<unsigned char> out;
  put_u32(out, 0x00000801);
  put_u32(out, count);
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void write_raw(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good());
}

void write_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Three 2x3 images with pixels 0, 10, 20, ... and labels 0, 4, 2.
const std::vector<unsigned char> kPixels = {0,  10,  20,  30,  40,  50,  60,  70,  80,
                                            90, 100, 110, 120, 130, 140, 150, 160, 255};
const std::vector<unsigned char> kLabels = {0, 4, 2};

void expect_small_dataset(const Dataset& d, std::size_t n) {
  ASSERT_EQ(d.size(), n);
  EXPECT_EQ(d.channels, 1);
  EXPECT_EQ(d.height, 2);
  EXPECT_EQ(d.width, 3);
  EXPECT_EQ(d.sample_numel(), 6);
  ASSERT_EQ(d.images.size(), n * 6);
  for (std::size_t i = 0; i < d.images.size(); ++i) {
    EXPECT_FLOAT_EQ(d.images[i], static_cast<float>(kPixels[i]) / 255.0f) << i;
  }
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_EQ(d.labels[i], kLabels[i]);
}

// Asserts that `fn` throws ConfigError whose message contains every one of `parts`.
template <typename Fn>
void expect_config_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message '" << e.what() << "' lacks '" << part << "'";
    }
  }
}

TEST(Idx, ReadsRawFiles) {
  TempDir dir;
  write_raw(dir.file("img"), idx_images(3, 2, 3, kPixels));
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  const Dataset d = read_idx(dir.file("img"), dir.file("lbl"));
  expect_small_dataset(d, 3);
  EXPECT_EQ(d.num_classes, 5);
}

TEST(Idx, ReadsGzipFiles) {
  TempDir dir;
  write_gz(dir.file("img.gz"), idx_images(3, 2, 3, kPixels));
  write_gz(dir.file("lbl.gz"), idx_labels(3, kLabels));
  expect_small_dataset(read_idx(dir.file("img.gz"), dir.file("lbl.gz")), 3);
}

TEST(Idx, LimitKeepsTheFirstSamples) {
  TempDir dir;
  write_gz(dir.file("img.gz"), idx_images(3, 2, 3, kPixels));
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  const Dataset d = read_idx(dir.file("img.gz"), dir.file("lbl"), 2);
  expect_small_dataset(d, 2);
  EXPECT_EQ(d.num_classes, 5);
  expect_small_dataset(read_idx(dir.file("img.gz"), dir.file("lbl"), 100), 3);
}

TEST(Idx, TruncatedFileIsAnError) {
  TempDir dir;
  // The header promises 3 images of 6 bytes; only 2 are there.
  const std::vector<unsigned char> two(kPixels.begin(), kPixels.begin() + 12);
  write_gz(dir.file("img.gz"), idx_images(3, 2, 3, two));
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  expect_config_error([&] { read_idx(dir.file("img.gz"), dir.file("lbl")); },
                      {dir.file("img.gz"), "truncated", "18", "12"});

  write_raw(dir.file("img"), idx_images(3, 2, 3, kPixels));
  write_raw(dir.file("short-lbl"), idx_labels(3, {1, 2}));
  expect_config_error([&] { read_idx(dir.file("img"), dir.file("short-lbl")); },
                      {dir.file("short-lbl"), "truncated", "3", "2"});

  // A gzip stream cut in the middle (no gzip trailer).
  std::vector<unsigned char> big(6000);
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<unsigned char>(i * 7919 % 251);
  write_gz(dir.file("cut.gz"), idx_images(1000, 2, 3, big));
  auto cut = std::filesystem::file_size(dir.file("cut.gz"));
  std::filesystem::resize_file(dir.file("cut.gz"), cut / 2);
  write_raw(dir.file("lbl1000"), idx_labels(1000, std::vector<unsigned char>(1000, 1)));
  expect_config_error([&] { read_idx(dir.file("cut.gz"), dir.file("lbl1000")); },
                      {dir.file("cut.gz"), "truncated", "6000"});

  write_raw(dir.file("header-only"), {0, 0, 8});
  expect_config_error([&] { read_idx(dir.file("header-only"), dir.file("lbl")); },
                      {dir.file("header-only"), "truncated"});
}

TEST(Idx, WrongMagicIsAnError) {
  TempDir dir;
  write_raw(dir.file("img"), idx_images(3, 2, 3, kPixels, 0x00000801));
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  expect_config_error([&] { read_idx(dir.file("img"), dir.file("lbl")); },
                      {dir.file("img"), "magic", "0x00000801"});
  write_raw(dir.file("img-ok"), idx_images(3, 2, 3, kPixels));
  // Swapped arguments: the labels file is read as images.
  expect_config_error([&] { read_idx(dir.file("lbl"), dir.file("img-ok")); },
                      {dir.file("lbl"), "magic"});
}

TEST(Idx, ZeroDimensionIsAnError) {
  TempDir dir;
  write_raw(dir.file("img"), idx_images(3, 0, 3, kPixels));
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  expect_config_error([&] { read_idx(dir.file("img"), dir.file("lbl")); },
                      {dir.file("img"), "row count"});
}

TEST(Idx, MismatchedCountsAreAnError) {
  TempDir dir;
  write_raw(dir.file("img"), idx_images(3, 2, 3, kPixels));
  write_raw(dir.file("lbl"), idx_labels(2, {0, 1}));
  expect_config_error([&] { read_idx(dir.file("img"), dir.file("lbl")); },
                      {dir.file("img"), dir.file("lbl"), "2 labels", "3 images"});
}

TEST(Idx, MissingFileIsAnError) {
  TempDir dir;
  write_raw(dir.file("lbl"), idx_labels(3, kLabels));
  expect_config_error([&] { read_idx(dir.file("nope"), dir.file("lbl")); },
                      {"cannot open", dir.file("nope")});
}

// The four MNIST file names in dir: train gzipped, test raw.
void write_mnist_dir(const TempDir& dir) {
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_images(3, 2, 3, kPixels));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_labels(3, kLabels));
  write_raw(dir.file("t10k-images-idx3-ubyte"),
            idx_images(2, 2, 3, std::vector<unsigned char>(kPixels.begin(), kPixels.begin() + 12)));
  write_raw(dir.file("t10k-labels-idx1-ubyte"), idx_labels(2, {0, 4}));
}

TEST(DataSource, LoadsMnistDirectory) {
  TempDir dir;
  write_mnist_dir(dir);
  for (const std::string prefix : {"mnist:", "idx:"}) {
    const DataSplit split = load_dataset(prefix + dir.path().string());
    expect_small_dataset(split.train, 3);
    expect_small_dataset(split.test, 2);
    EXPECT_EQ(split.train.num_classes, 5);
    EXPECT_EQ(split.test.num_classes, 5);
  }
  // Train limited to one sample (label 0) still gets the test set's 5 classes.
  const DataSplit limited = load_dataset("mnist:" + dir.path().string(), 1, 0);
  EXPECT_EQ(limited.train.size(), 1u);
  EXPECT_EQ(limited.test.size(), 2u);
  EXPECT_EQ(describe(limited.train), "mnist train: 1 samples of 1x2x3, 5 classes");
}

TEST(DataSource, FashionMnistDirectoryOverride) {
  TempDir dir;
  write_mnist_dir(dir);
  ::setenv("PSGD_FASHION_MNIST_DIR", dir.path().c_str(), 1);
  const DataSplit split = load_dataset("fashion-mnist");
  ::unsetenv("PSGD_FASHION_MNIST_DIR");
  EXPECT_EQ(split.train.size(), 3u);
  EXPECT_EQ(split.train.name, "fashion-mnist train");

  ::setenv("PSGD_FASHION_MNIST_DIR", dir.file("missing").c_str(), 1);
  expect_config_error([] { load_dataset("fashion-mnist"); }, {"dataset-fashion-mnist"});
  ::unsetenv("PSGD_FASHION_MNIST_DIR");
}

TEST(DataSource, Errors) {
  TempDir dir;
  expect_config_error([] { load_dataset("cifar-11"); }, {"cifar-11", "fashion-mnist", "mnist:DIR"});
  expect_config_error([&] { load_dataset("mnist:" + dir.file("missing")); },
                      {dir.file("missing"), "does not exist"});
  expect_config_error([&] { load_dataset("mnist:" + dir.path().string()); },
                      {"train-images-idx3-ubyte"});
}

TEST(DataSource, FashionMnistFromDebianPackage) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  ::unsetenv("PSGD_FASHION_MNIST_DIR");
  const DataSplit split = load_dataset("fashion-mnist", 1000, 500);
  EXPECT_EQ(split.train.size(), 1000u);
  EXPECT_EQ(split.test.size(), 500u);
  for (const Dataset* d : {&split.train, &split.test}) {
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->height, 28);
    EXPECT_EQ(d->width, 28);
    EXPECT_EQ(d->num_classes, 10);
    EXPECT_EQ(d->images.size(), d->size() * 784);
  }
  EXPECT_EQ(describe(split.train), "fashion-mnist train: 1000 samples of 1x28x28, 10 classes");
}

}  // namespace
}  // namespace psgd::nn
