#include "nn/version.h"

#include <dlfcn.h>
#include <torch/version.h>

#include "nn/threads.h"

namespace psgd::nn {

std::string torch_version() {
  return TORCH_VERSION;
}

std::string blas_description() {
  // Looked up at run time, as in threads.cc: OpenBLAS is optional.
  using ConfigFn = char* (*)();
  if (auto config = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    const char* text = config();
    if (text != nullptr) return text;
  }
  return blas_info() +
         " (libtorch falls back to the reference BLAS, about 30x slower: install "
         "libopenblas0-pthread, e.g. via scripts/setup.sh)";
}

}  // namespace psgd::nn
