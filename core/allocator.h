#pragma once
// Allocator settings for the training processes (init_server, client).
//
// Every iteration allocates and frees a few buffers of the model's size (a received gradient or
// parameter payload, an encoded one). With glibc's defaults a freed buffer of a few megabytes goes
// back to the kernel (heap trimming, or munmap above the dynamic mmap threshold), and the next
// allocation faults in and zero-fills every page again: ~5 % of an MLP worker's time on this
// machine (perf: page faults under memset/memmove). keep_freed_memory() keeps freed memory in
// the process for reuse, as PyTorch's caching allocator and TensorFlow's BFC allocator do. Memory
// use stays at its peak instead of shrinking; a training process's peak is its working set anyway.
namespace psgd {

void keep_freed_memory();

}  // namespace psgd
