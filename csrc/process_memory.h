// A process-wide allocator setting for our executables (mamba-lrp, the benches), not
// applied by the library itself.
#pragma once

namespace mamba_lrp {

// An explanation allocates and frees activations of the same few sizes layer after layer.
// glibc's defaults give blocks of a few MB and more back to the kernel (mmap between
// 128 KB and 32 MB, trimming the heap's top) and fault fresh zeroed pages in again for the
// next layer: at L = 4096 (Mamba-130M) that churn cost over a second. After this call the
// process keeps what it freed for reuse; its peak stays the largest live set plus
// fragmentation. Call it first thing in main(); glibc only (a no-op elsewhere).
void retain_freed_memory();

}  // namespace mamba_lrp
