#pragma once
// In-memory image classification data, as every dataset reader in nn/ produces it.
//
// Samples are stored sample-major (N x C x H x W) so a batch is a contiguous slice and the Trainer
// can wrap it without conversion. 8-bit image sources (IDX, CIFAR-10, uint8 NumPy arrays) are
// read as pixel / 255 in [0, 1]; tabular sources (CSV, other NumPy dtypes) keep their values and
// appear as 1 x 1 x F. A normaliser (nn/normalize.h) may transform them further. Torch-free on
// purpose: the partitioner and the experiment drivers include this header.
//
// Regression data (--target regression) carry float targets, target_dims per sample, as read
// (never normalised); their labels are all 0 and num_classes is 1, so that placement, hashing and
// shipping treat every sample alike.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace psgd::nn {

struct Dataset {
  std::vector<float> images;         // size() * sample_numel() values
  std::vector<std::int64_t> labels;  // size() values in [0, num_classes)
  std::int64_t channels = 1;
  std::int64_t height = 0;
  std::int64_t width = 0;
  int num_classes = 0;
  std::string name;  // e.g. "fashion-mnist train"
  // Regression: size() * target_dims float targets, row-major; target_dims 0 for class labels.
  std::vector<float> targets;
  std::int64_t target_dims = 0;

  std::size_t size() const { return labels.size(); }
  std::int64_t sample_numel() const { return channels * height * width; }
};

struct DataSplit {
  Dataset train;
  Dataset test;
  Dataset validation;  // held out of the training set by --validation_split; often empty
  // What the reader found worth saying (classes without any sample, ...), one line each.
  std::vector<std::string> notes;
};

}  // namespace psgd::nn
