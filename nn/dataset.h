#pragma once
// In-memory image classification data, as every dataset reader in nn/ produces it.
//
// Images are stored sample-major (N x C x H x W), already scaled to [0, 1], so a batch is a
// contiguous slice and the Trainer can wrap it without conversion. Torch-free on purpose: the
// partitioner and the experiment drivers include this header.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace psgd::nn {

struct Dataset {
  std::vector<float> images;         // size() * sample_numel() values in [0, 1]
  std::vector<std::int64_t> labels;  // size() values in [0, num_classes)
  std::int64_t channels = 1;
  std::int64_t height = 0;
  std::int64_t width = 0;
  int num_classes = 0;
  std::string name;  // e.g. "fashion-mnist train"

  std::size_t size() const { return labels.size(); }
  std::int64_t sample_numel() const { return channels * height * width; }
};

struct DataSplit {
  Dataset train;
  Dataset test;
};

}  // namespace psgd::nn
