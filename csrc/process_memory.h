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

// The exception, for an explanation that recomputes its SSM branches (the memory-lean
// backward; call it once that is decided, after retain_freed_memory): blocks of 8 MiB and
// more go back to the system as soon as they are freed (glibc's mmap threshold fixed at
// 8 MiB), since a heap that keeps activation-sized holes would put the peak far above what
// is alive, and the peak is what recomputing is for. Costs page faults on each large
// allocation, so only then.
void release_large_blocks_when_freed();

}  // namespace mamba_lrp
