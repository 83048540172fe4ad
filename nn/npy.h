#pragma once
// Readers for NumPy's .npy arrays and .npz archives (numpy.lib.format, format versions 1-3).
//
// .npy: the magic "\x93NUMPY", a version, a little header dict ('descr', 'fortran_order',
// 'shape') and the raw array. Accepted dtypes: <f4, <f8, |u1, <i4, <i8 (and |i1); C order only.
// .npz: a zip archive of .npy members, stored or deflated (raw inflate through zlib). Every header
// field and size is checked against the file before anything is read; zip64 archives (members or
// archives over 4 GiB), encrypted members and other compression methods are refused.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "nn/dataset.h"

namespace psgd::nn {

struct NpyArray {
  std::string dtype;                // e.g. "<f4"
  std::vector<std::int64_t> shape;  // C order
  std::vector<unsigned char> data;  // numel() * item size bytes, little-endian
  std::int64_t numel() const;
};

// Parses one .npy image held in memory; `what` names it in errors. Throws ConfigError.
NpyArray parse_npy(std::span<const unsigned char> bytes, const std::string& what);
NpyArray read_npy(const std::string& path);

// The members of an .npz archive by name without the ".npy" suffix.
std::map<std::string, NpyArray> read_npz(const std::string& path);

struct ArrayOptions {
  // Float targets: y is (N) or (N, T), any dtype (Dataset::targets), instead of class labels.
  bool regression = false;
  // How a 4-D x is laid out: nchw (N, C, H, W; PyTorch), nhwc (N, H, W, C; Keras, channels
  // last, converted to N x C x H x W here, at load) or auto: nhwc when the last dimension is 1, 3
  // or 4 and the second is not, else nchw.
  std::string layout = "auto";
};

// A Dataset from a features array x ((N, F), (N, H, W), or 4-D as options.layout says; |u1 read
// as pixel/255, other dtypes as they are) and a label array y ((N) or (N, 1), integer dtype,
// values 0..65535; regression: (N) or (N, T), any dtype). `x_name` and `y_name` (file names, or
// archive:member) name each array in errors about it. When `notes` is given, --image_layout
// auto's decision on a 4-D x is added to it in one line.
Dataset dataset_from_arrays(const NpyArray& x, const NpyArray& y, const std::string& x_name,
                            const std::string& y_name, const ArrayOptions& options = {},
                            std::vector<std::string>* notes = nullptr);

// What --image_layout auto makes of a 4-D shape (N, A, B, C): "nhwc" or "nchw".
std::string detect_layout(std::span<const std::int64_t> shape);

}  // namespace psgd::nn
