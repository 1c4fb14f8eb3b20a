#include "csrc/process_memory.h"

#include <cstdlib>  // defines __GLIBC__ on glibc
#include <limits>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mamba_lrp {

void retain_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // blocks below 1 GiB come from the heap, and go back to it
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());  // never shrink the heap
#endif
}

void release_large_blocks_when_freed() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
#endif
}

}  // namespace mamba_lrp
