#include "core/allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace psgd {

void keep_freed_memory() {
#if defined(__GLIBC__)
  // Buffers below 64 MB come from the heap (not a fresh mmap per allocation), and the heap is
  // never trimmed below 1 GB of free space at its top. Setting either disables glibc's dynamic
  // mmap threshold, so both are set.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace psgd
