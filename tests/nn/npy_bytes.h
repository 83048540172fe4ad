#pragma once
// npy_bytes(descr, shape, data): a version-1 .npy image, for tests of the NumPy reader
// (`shape` as NumPy writes it, e.g. "(5, 2)"; `fortran` sets fortran_order).
#include <string>
#include <vector>

namespace psgd::nn::testing {

inline std::vector<unsigned char> npy_bytes(const std::string& descr, const std::string& shape,
                                            const std::vector<unsigned char>& data,
                                            bool fortran = false) {
  std::string header = "{'descr': '" + descr +
                       "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::vector<unsigned char> b{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  b.push_back(static_cast<unsigned char>(header.size() & 0xff));
  b.push_back(static_cast<unsigned char>(header.size() >> 8));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

}  // namespace psgd::nn::testing
