#include "nn/threads.h"

#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <thread>

namespace psgd::nn {
namespace {

// Looked up at run time so psgd neither links OpenBLAS directly nor requires it.
template <typename Fn>
Fn find_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

void set_compute_threads(int n) {
  n = std::max(1, n);
  torch::set_num_threads(n);

  // Inter-op threads can be set once, before any inter-op work; torch throws otherwise.
  static std::once_flag interop_once;
  std::call_once(interop_once, [n] {
    try {
      torch::set_num_interop_threads(n);
    } catch (const c10::Error&) {
      // Too late for this process: keep torch's choice.
    }
  });

  if (auto set = find_symbol<void (*)(int)>("openblas_set_num_threads")) set(n);
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  // 32 MB is glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit).
  const bool mmap_ok = ::mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1;
  const bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024) == 1;
  // Blocks above the threshold's maximum too: evaluating the CNN on a chunk of 1,000 test
  // samples allocates 50 MB for the first convolution's output, which glibc mmapped and unmapped
  // per chunk (~140,000 page faults per evaluation of the test set). With no mmapped blocks at
  // all they come from the heap and stay there for the next chunk.
  const bool no_mmap_ok = ::mallopt(M_MMAP_MAX, 0) == 1;
  return mmap_ok && trim_ok && no_mmap_ok;
#else
  return false;
#endif
}

int default_threads(int processes_on_host) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores / std::max(1, processes_on_host));
}

bool has_openblas() {
  return find_symbol<char* (*)()>("openblas_get_config") != nullptr;
}

std::string blas_info() {
  if (auto config = find_symbol<char* (*)()>("openblas_get_config")) {
    const char* text = config();
    return std::string("openblas (") + (text != nullptr ? text : "unknown configuration") + ")";
  }
  return "reference or unknown BLAS";
}

}  // namespace psgd::nn
