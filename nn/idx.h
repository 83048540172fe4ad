#pragma once
// Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al., "The MNIST database").
//
// Files may be gzip-compressed or raw: both are read through zlib's gzread, which passes
// uncompressed data through unchanged. Only the unsigned-byte variants are accepted: images are
// magic 0x00000803 (3 dimensions: count, rows, columns), labels 0x00000801 (1 dimension: count).
#include <cstdint>
#include <string>

#include "nn/dataset.h"

namespace psgd::nn {

// Reads images and labels into a Dataset with channels = 1, pixels divided by 255 and
// num_classes = max label + 1. limit > 0 keeps only the first `limit` samples (0 keeps all).
// Throws ConfigError naming the file when it cannot be opened, has a wrong magic number or
// implausible dimensions, is shorter than its header promises, or when the two files disagree
// on the sample count.
Dataset read_idx(const std::string& images_path, const std::string& labels_path,
                 std::int64_t limit = 0);

}  // namespace psgd::nn
