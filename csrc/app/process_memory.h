// The process-wide memory policy of our executables (mamba-lrp, the benches), not applied
// by the library itself, and the CPU allocator behind it.
#pragma once

#include <c10/core/Allocator.h>
#include <torch/version.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

// torch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define MAMBA_LRP_ALLOCATE_CONST
#define MAMBA_LRP_ALLOCATOR_HAS_COPY_DATA 1
#else
#define MAMBA_LRP_ALLOCATE_CONST const
#endif

namespace mamba_lrp {

// An explanation allocates and frees activations of the same few sizes layer after layer.
// Left to glibc, blocks above its mmap threshold go back to the kernel when freed and the
// next layer faults fresh pages in, which the kernel must clear first: work repeated for
// every layer, growing with the sequence length. After this call libtorch's CPU tensors
// of BlockReusingCpuAllocator::kLargeBlockBytes and more come from that allocator (below),
// and glibc keeps what it frees of the smaller ones instead of trimming its heap. Call it
// first thing in main(); POSIX (mmap) and glibc parts are skipped where absent.
void retain_freed_memory();

// Gives the heap transparent huge pages for its first 512 MiB (address space only until
// touched; c10 takes tensors under 1 MiB from it, which at L = 128 are most activations),
// where the kernel offers them
// (Linux: MADV_HUGEPAGE, transparent_hugepage "madvise" or "always"): one fault per 2 MiB
// instead of 512. Meant to run before the libraries' static initialisers, which fill about
// 40 MiB of heap in Debian's libtorch (the executable's DT_PREINIT_ARRAY, see
// csrc/app/cli/main.cpp); sets glibc's mmap and trim thresholds as retain_freed_memory
// does. glibc only, skipped elsewhere. Uses no environment (not yet
// readable through getenv there) and no C++ object of ours.
void advise_huge_pages_for_heap();

// Bytes a BlockReusingCpuAllocator holds, and what it did.
struct LargeBlockStats {
  std::size_t in_use_bytes = 0;       // handed out, page-rounded with a header
  std::size_t cached_bytes = 0;       // mapped, free, kept for reuse
  std::size_t peak_mapped_bytes = 0;  // the most ever mapped at once
  std::size_t maps = 0, reuses = 0, unmaps = 0;
};

// Large blocks from anonymous page mappings that are kept when freed and handed out again:
// the smallest kept range that holds a request (split when larger; neighbouring free ranges
// merge). Only when none holds it is a fresh range mapped, and before that, kept ranges are
// unmapped (oldest freed first) until as many bytes as it needs are gone or none are kept,
// so what is mapped never exceeds the most that was ever in use at once: the peak is the
// largest live set, without fragmentation on top. A fresh range of 2 MiB or more starts on a
// huge-page boundary and is advised for transparent huge pages (one fault per 2 MiB where
// the kernel offers them: 101 800 faults of an L = 512 explanation became 22 400). Smaller blocks come from c10's own CPU
// allocator, unchanged. The raw_allocate / raw_deallocate interface works for both kinds.
// Thread-safe. Must outlive every block it handed out.
class BlockReusingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr std::size_t kLargeBlockBytes = std::size_t(1) << 20;

  BlockReusingCpuAllocator() = default;
  BlockReusingCpuAllocator(const BlockReusingCpuAllocator&) = delete;
  BlockReusingCpuAllocator& operator=(const BlockReusingCpuAllocator&) = delete;
  ~BlockReusingCpuAllocator() override;  // unmaps the kept ranges

  c10::DataPtr allocate(std::size_t n) MAMBA_LRP_ALLOCATE_CONST override;
#if defined(MAMBA_LRP_ALLOCATOR_HAS_COPY_DATA)
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif

  c10::DeleterFnPtr raw_deleter() const override { return &raw_release; }

  LargeBlockStats stats() const;

 private:
  struct FreeRange {
    std::size_t size;
    std::uint64_t freed_at;  // a counter: larger is more recent
  };
  void* take(std::size_t size) const;
  std::size_t unmap_oldest() const;
  static void release(void* data);      // a large block
  static void raw_release(void* data);  // either kind

  mutable std::mutex mutex_;
  mutable std::map<char*, FreeRange> free_;  // kept ranges by address
  mutable std::uint64_t clock_ = 0;
  mutable LargeBlockStats stats_;
};

}  // namespace mamba_lrp
