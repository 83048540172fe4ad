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

// Makes glibc's malloc keep freed memory in the process instead of handing it back to the kernel
// after every training step: the mmap threshold at its maximum (32 MB), so a batch's activations
// (6-13 MB for resnet8 at batch 128) come from the heap, no block mmapped at all (so neither do
// larger ones: 50 MB per evaluation chunk of the CNN), and the heap trimmed only above 1 GB.
// Without it each step unmapped and re-faulted its activations page by page: perf showed ~29 %
// of a one-thread resnet8 step in the kernel's page-fault and unmap paths (bench/README.md,
// "The engine on convolutions", has the before/after figures). Process-wide; call once at
// start-up of a process that trains. Returns false when malloc refused (not glibc).
bool keep_freed_memory();

// max(1, hardware threads / processes_on_host).
int default_threads(int processes_on_host);

// "openblas (<OpenBLAS config string>)" when OpenBLAS is loaded, else
// "reference or unknown BLAS"; for the startup warning about a slow BLAS.
std::string blas_info();

// True when blas_info() found OpenBLAS.
bool has_openblas();

}  // namespace psgd::nn
