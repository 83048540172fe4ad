#pragma once
// Per-process compute threads for torch and the BLAS underneath it.
//
// Several psgd processes often share one host (a parameter server and N clients), so each sets
// its own thread count instead of letting torch and OpenBLAS each spawn one thread per core.
// Debian's libtorch calls the system libblas.so.3, which is OpenBLAS when libopenblas0-pthread is
// installed, else the reference BLAS (about 30x slower for an MLP step).
#include <string>

namespace psgd::nn {

// Sets torch's intra-op threads to n (>= 1), its inter-op threads too if that is still allowed
// (torch refuses once parallel work ran or it was set before; then it is left alone), and
// OpenBLAS's thread count when OpenBLAS is the loaded BLAS.
void set_compute_threads(int n);

// max(1, hardware threads / processes_on_host).
int default_threads(int processes_on_host);

// "openblas (<OpenBLAS config string>)" when OpenBLAS is loaded, else
// "reference or unknown BLAS"; for the startup warning about a slow BLAS.
std::string blas_info();

// True when blas_info() found OpenBLAS.
bool has_openblas();

}  // namespace psgd::nn
