#pragma once
// Dataset sources by name, as the --dataset flag spells them.
//
//   fashion-mnist   Debian's dataset-fashion-mnist package, /usr/share/datasets/fashion-mnist
//                   (the environment variable PSGD_FASHION_MNIST_DIR overrides the directory)
//   mnist:DIR       the four MNIST-format IDX files in DIR, each with or without ".gz":
//   idx:DIR         train-images-idx3-ubyte, train-labels-idx1-ubyte,
//                   t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
//   cifar10:DIR     CIFAR-10 binary batches (nn/cifar.h)
//   csv:FILE        one CSV with a label column (--label_column; default the last), nn/csv.h
//   csv:X,Y         features and labels in two CSV files
//   npy:X,Y         two .npy arrays (nn/npy.h)
//   npz:FILE        an .npz archive with members x and y (or x_train and y_train), and
//                   optionally x_test and y_test
//
// csv and npy also take keyed files, comma-separated: x=, y=, test_x=, test_y= (and, for csv,
// train= and test= for single files with a label column), e.g. csv:train=a.csv,test=b.csv.
// A source without a test set holds out every 5th sample (rows 4, 9, 14, ...) as its test set:
// deterministic, independent of the seed, and the same on every machine.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace psgd::nn {

struct SourceOptions {
  // csv only: a header name, a 0-based index, "" (last) or "none"; regression: one or several,
  // comma-separated.
  std::string label_column;
  // Float targets (--target regression): csv, npy and npz only; other sources are refused.
  bool regression = false;
  std::string image_layout = "auto";  // npy / npz 4-D features: auto | nchw | nhwc (nn/npy.h)
  // A source without a test set holds out every 5th sample as one (true), or keeps every sample
  // for training and has an empty test set (false: a worker of a --local_data job, which trains
  // on its whole file and never evaluates).
  bool hold_out_test = true;
  // Refuse labels of which most classes 0..max have no sample (a stray 255, a column of
  // measurements), or only note the empty classes (false: a worker of a --local_data job, whose
  // own file may hold a few classes of the server's model, which fixes the classes and checks the
  // labels against them).
  bool refuse_sparse_labels = true;
};

// Loads the train and test sets named by `spec`; a limit > 0 keeps only the first samples of
// that set. Both sets get the same num_classes (the larger of the two). Throws ConfigError for an
// unknown spec, a missing directory or file, a malformed file, mismatched shapes or bad labels.
DataSplit load_dataset(const std::string& spec, std::int64_t train_limit = 0,
                       std::int64_t test_limit = 0, const SourceOptions& options = {});

// One line for logs, e.g. "fashion-mnist train: 60000 samples of 1x28x28, 10 classes".
std::string describe(const Dataset& dataset);

// The rows `rows` of `d`, in that order, as a new Dataset (same shape and num_classes).
Dataset subset(const Dataset& d, std::span<const std::int64_t> rows, std::string name);

// A deterministic hold-out of round(fraction * n) rows (shuffled with the seed); both lists
// ascending. fraction must be in [0, 1).
struct HoldOut {
  std::vector<std::int64_t> train;
  std::vector<std::int64_t> validation;
};
HoldOut hold_out(std::int64_t n, double fraction, std::uint64_t seed);

}  // namespace psgd::nn
