#pragma once
// Dataset sources by name, as the --dataset flag spells them.
//
//   fashion-mnist   Debian's dataset-fashion-mnist package, /usr/share/datasets/fashion-mnist
//                   (the environment variable PSGD_FASHION_MNIST_DIR overrides the directory)
//   mnist:DIR       the four MNIST-format IDX files in DIR, each with or without ".gz":
//   idx:DIR         train-images-idx3-ubyte, train-labels-idx1-ubyte,
//                   t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
#include <cstdint>
#include <string>

#include "nn/dataset.h"

namespace psgd::nn {

// Loads the train and test sets named by `spec`; a limit > 0 keeps only the first samples of
// that set. Both sets get the same num_classes (the larger of the two). Throws ConfigError for an
// unknown spec, a missing directory or file, or a malformed file.
DataSplit load_dataset(const std::string& spec, std::int64_t train_limit = 0,
                       std::int64_t test_limit = 0);

// One line for logs, e.g. "fashion-mnist train: 60000 samples of 1x28x28, 10 classes".
std::string describe(const Dataset& dataset);

}  // namespace psgd::nn
