#pragma once
// Reader for the CIFAR-10 binary format (Krizhevsky, "Learning Multiple Layers of Features from
// Tiny Images", 2009; the "binary version" of https://www.cs.toronto.edu/~kriz/cifar.html).
//
// Each file is a sequence of 3073-byte records: one label byte (0..9), then 1024 red, 1024 green
// and 1024 blue bytes of a 32x32 image in row-major order. A directory holds data_batch_1.bin ..
// data_batch_5.bin (training; at least data_batch_1.bin, later ones read while they exist) and
// test_batch.bin. Pixels are divided by 255 like every 8-bit image source.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace psgd::nn {

inline constexpr std::int64_t kCifarSide = 32;
inline constexpr std::int64_t kCifarChannels = 3;
inline constexpr int kCifarClasses = 10;

// Reads the records of `paths` in order into one Dataset (3x32x32, 10 classes). limit > 0 keeps
// only the first `limit` samples. Throws ConfigError naming the file when it cannot be opened,
// its size is not a multiple of 3073 bytes (or is zero), or a label byte is above 9.
Dataset read_cifar10(const std::vector<std::string>& paths, std::int64_t limit = 0);

// The training and test sets of a CIFAR-10 binary directory (see above).
DataSplit read_cifar10_dir(const std::string& dir, std::int64_t train_limit = 0,
                           std::int64_t test_limit = 0);

}  // namespace psgd::nn
