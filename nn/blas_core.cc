// Compiled into every executable that links psgd_nn (an INTERFACE source of that library, see
// nn/CMakeLists.txt), because only code in the executable itself runs after every shared library
// is initialised and before main().
//
// OpenBLAS picks its kernels for the CPU it finds when it loads. A CPU model newer than the
// OpenBLAS build knows (Debian 12 ships 0.3.21, from 2022) gets the generic SSE kernels
// ("Prescott"): on an Intel Xeon (family 6, model 207) the MLP trained 3x slower with them than
// with the AVX-512 kernels (plain loop 31 k against 100-112 k samples/s). When that happened and
// the user has not chosen (OPENBLAS_CORETYPE unset), this starts the program again at once, with
// OPENBLAS_CORETYPE naming the best kernels the CPU can run (SkylakeX with AVX-512, Haswell with
// AVX2 and FMA), and the same arguments. Nothing else has run yet. Under LD_PRELOAD (valgrind,
// heaptrack) it only prints a hint instead, as such tools need not follow an exec. The BLAS line
// of a run's config.json (OpenBLAS's configuration string) names the kernels in use.
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace {

// The kernels OpenBLAS falls back to for an unknown x86-64 CPU, and older SSE-only ones.
bool sse_only(const char* core) {
  for (const char* name : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                           "Barcelona", "Opteron", "Opteron(SSE3)"}) {
    if (std::strcmp(core, name) == 0) return true;
  }
  return false;
}

__attribute__((constructor)) void choose_openblas_kernels(int, char** argv, char**) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  using CoreName = char* (*)();
  const auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (corename == nullptr) return;  // not OpenBLAS
  const char* core = corename();
  if (core == nullptr || !sse_only(core)) return;
  __builtin_cpu_init();
  const char* better = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    better = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    better = "Haswell";
  }
  if (better == nullptr) return;
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr && *preload != '\0') {
    // A tool that injects itself this way (valgrind, heaptrack, ...) may not follow an exec:
    // keep this process, slow kernels and all, and say how to get the fast ones.
    std::fprintf(stderr,
                 "psgd: OpenBLAS chose its generic kernels (%s) for this CPU; with LD_PRELOAD set "
                 "psgd does not restart itself with faster ones: set OPENBLAS_CORETYPE=%s\n",
                 core, better);
    return;
  }
  // Set even if the exec fails, so a child started later does not try again.
  if (::setenv("OPENBLAS_CORETYPE", better, 0) != 0) return;
  ::execv("/proc/self/exe", argv);
  // No /proc: go on with the slow kernels; the work is the same, only slower.
  std::fprintf(stderr,
               "psgd: OpenBLAS chose its generic kernels (%s) for this CPU; set "
               "OPENBLAS_CORETYPE=%s for its fast ones (restarting with it failed: %s)\n",
               core, better, std::strerror(errno));
}

}  // namespace
