#include "core/allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace psgd {

void keep_freed_memory() {
#if defined(__GLIBC__)
  // Every buffer comes from the heap (not a fresh mmap per allocation: M_MMAP_MAX 0; the
  // threshold at glibc's largest accepted value, 32 MB, for a malloc that ignores the former),
  // and the heap is never trimmed below 1 GB of free space at its top. Setting either threshold
  // disables glibc's dynamic one, so both are set. The same settings as nn::keep_freed_memory.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_MAX, 0);
#endif
}

}  // namespace psgd
