#pragma once
// Datasets as bytes: what --ship_data sends to a worker, and the content hash by which a worker
// that already holds the same data is recognised.
//
// Layout of a pack (little-endian): "PSGDPACK", u32 version (2), i64 channels, height, width,
// i32 num_classes, u64 count, i64 target_dims, then count int64 labels, then count x target_dims
// float32 regression targets (none for class labels), then count x C x H x W float32 values.
// Values are the source's (before any normaliser): the Job carries the normaliser's statistics.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace psgd::nn {

std::vector<std::uint8_t> pack_dataset(const Dataset& d);

// Throws ConfigError when the bytes are not a well-formed pack (sizes are checked before any
// allocation).
Dataset unpack_dataset(std::span<const std::uint8_t> bytes, std::string name);

// SHA-256 (hex) of a dataset's shape, class count, labels, targets and values: equal for equal
// data, whatever file format it was read from.
std::string content_hash(const Dataset& d);

// The fingerprint of some rows of a dataset: content_hash(subset(d, rows)) without the copy. A
// worker proves with it which rows it holds (its samples as read from its own file, before
// normalising); the server computes it over the rows it assigned. Throws ConfigError for a row
// outside d.
std::string rows_hash(const Dataset& d, std::span<const std::int64_t> rows);

// SHA-256 of bytes, as 64 lowercase hex digits.
std::string sha256_hex(std::span<const std::uint8_t> bytes);

}  // namespace psgd::nn
