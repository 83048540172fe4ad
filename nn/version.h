#pragma once
// Versions of the engine underneath, for run provenance (torch-free header).
#include <string>

namespace psgd::nn {

std::string torch_version();
// The BLAS libtorch's matrix products run on ("OpenBLAS 0.3.21 ..." or a warning text).
std::string blas_description();

}  // namespace psgd::nn
