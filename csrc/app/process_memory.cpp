#include "csrc/app/process_memory.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>  // defines __GLIBC__ on glibc
#include <iterator>
#include <unordered_set>
#include <limits>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define MAMBA_LRP_HAS_MMAP 1
#endif

namespace mamba_lrp {
namespace {

// A large block's first 64 bytes: its size and its allocator; the tensor's bytes follow
// (64-byte aligned, as c10's own allocator aligns).
struct BlockHeader {
  std::size_t size;
  const BlockReusingCpuAllocator* owner;
};
constexpr std::size_t kHeaderBytes = 64;
static_assert(sizeof(BlockHeader) <= kHeaderBytes, "header fits");

// The data pointers of the large blocks in use, of every instance: what the raw interface's
// one deleter needs to tell them from small blocks (c10's, which carry no header).
std::mutex live_mutex;
std::unordered_set<void*>& live_large_blocks() {
  static auto* live = new std::unordered_set<void*>();  // never destroyed (static teardown frees blocks)
  return *live;
}

#if defined(MAMBA_LRP_HAS_MMAP)
std::size_t page_rounded(std::size_t n) {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}
#endif

BlockReusingCpuAllocator* installed = nullptr;

#if defined(__GLIBC__)
constexpr int kMmapThresholdBytes = 1 << 30;  // glibc maps blocks of this size and more on their own
#endif

#if defined(MAMBA_LRP_HAS_MMAP)
// Transparent huge pages: one fault (and one page-table entry) per 2 MiB instead of 512.
constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;

// `size` bytes of fresh anonymous memory (nullptr when none), starting at a huge-page
// boundary when the range spans one, and advised for huge pages where the kernel offers
// them (Linux's MADV_HUGEPAGE; transparent_hugepage "madvise" or "always"). Exactly `size`
// bytes stay mapped: the reserve around the aligned start is unmapped again.
void* map_huge_page_aligned(std::size_t size) {
  const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (size < kHugePageBytes) {
    void* m = mmap(nullptr, size, prot, flags, -1, 0);
    return m == MAP_FAILED ? nullptr : m;
  }
  void* reserve = mmap(nullptr, size + kHugePageBytes, prot, flags, -1, 0);
  if (reserve == MAP_FAILED) return nullptr;
  char* begin = static_cast<char*>(reserve);
  char* aligned = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(begin) + kHugePageBytes - 1) /
                                          kHugePageBytes * kHugePageBytes);
  if (aligned > begin) munmap(begin, static_cast<std::size_t>(aligned - begin));
  char* end = begin + size + kHugePageBytes;
  if (end > aligned + size) munmap(aligned + size, static_cast<std::size_t>(end - (aligned + size)));
#if defined(MADV_HUGEPAGE)
  madvise(aligned, size, MADV_HUGEPAGE);  // advice: ignored where huge pages are off
#endif
  return aligned;
}
#endif

}  // namespace

#if defined(MAMBA_LRP_HAS_MMAP)

BlockReusingCpuAllocator::~BlockReusingCpuAllocator() {
  for (const auto& kv : free_) munmap(kv.first, kv.second.size);
}

c10::DataPtr BlockReusingCpuAllocator::allocate(std::size_t n) MAMBA_LRP_ALLOCATE_CONST {
  if (n < kLargeBlockBytes) return c10::GetDefaultCPUAllocator()->allocate(n);
  TORCH_CHECK(n <= std::numeric_limits<std::size_t>::max() / 2, "out of memory: cannot allocate ", n,
              " bytes for a CPU tensor");
  char* base = static_cast<char*>(take(page_rounded(n + kHeaderBytes)));
  void* data = base + kHeaderBytes;
  {
    std::lock_guard<std::mutex> lock(live_mutex);
    live_large_blocks().insert(data);
  }
  return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
}

// The smallest kept range that holds size bytes (the most recently freed among equals: its
// pages are warmest), split when larger; else a fresh mapping, for which kept ranges are
// unmapped first, oldest freed first, until as many bytes are gone as it needs.
void* BlockReusingCpuAllocator::take(std::size_t size) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto best = free_.end();
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const FreeRange& r = it->second;
    if (r.size < size) continue;
    if (best == free_.end() || r.size < best->second.size ||
        (r.size == best->second.size && r.freed_at > best->second.freed_at))
      best = it;
  }
  char* base = nullptr;
  if (best != free_.end()) {
    base = best->first;
    const FreeRange r = best->second;
    free_.erase(best);
    if (r.size > size) free_.emplace(base + size, FreeRange{r.size - size, r.freed_at});
    stats_.cached_bytes -= size;
    ++stats_.reuses;
  } else {
    std::size_t unmapped = 0;
    while (unmapped < size && !free_.empty()) unmapped += unmap_oldest();
    void* m = map_huge_page_aligned(size);
    TORCH_CHECK(m != nullptr, "out of memory: cannot map ", size, " bytes for a CPU tensor (",
                stats_.in_use_bytes, " bytes in use)");
    base = static_cast<char*>(m);
    ++stats_.maps;
    stats_.peak_mapped_bytes = std::max(stats_.peak_mapped_bytes, stats_.in_use_bytes + stats_.cached_bytes + size);
  }
  *reinterpret_cast<BlockHeader*>(base) = BlockHeader{size, this};
  stats_.in_use_bytes += size;
  return base;
}

std::size_t BlockReusingCpuAllocator::unmap_oldest() const {
  auto oldest = free_.begin();
  for (auto it = free_.begin(); it != free_.end(); ++it)
    if (it->second.freed_at < oldest->second.freed_at) oldest = it;
  const std::size_t size = oldest->second.size;
  munmap(oldest->first, size);
  free_.erase(oldest);
  stats_.cached_bytes -= size;
  ++stats_.unmaps;
  return size;
}

void BlockReusingCpuAllocator::raw_release(void* data) {
  bool large = false;
  {
    std::lock_guard<std::mutex> lock(live_mutex);
    large = live_large_blocks().count(data) > 0;
  }
  if (large) return release(data);
  c10::GetDefaultCPUAllocator()->raw_deleter()(data);
}

// Keeps the range, merged with free neighbours (adjacent pages, even of another mapping).
void BlockReusingCpuAllocator::release(void* data) {
  {
    std::lock_guard<std::mutex> lock(live_mutex);
    live_large_blocks().erase(data);
  }
  char* base = static_cast<char*>(data) - kHeaderBytes;
  const BlockHeader h = *reinterpret_cast<const BlockHeader*>(base);
  const BlockReusingCpuAllocator& a = *h.owner;
  std::lock_guard<std::mutex> lock(a.mutex_);
  std::size_t size = h.size;
  a.stats_.in_use_bytes -= size;
  a.stats_.cached_bytes += size;
  const std::uint64_t now = ++a.clock_;
  auto next = a.free_.lower_bound(base);
  if (next != a.free_.end() && next->first == base + size) {
    size += next->second.size;
    next = a.free_.erase(next);
  }
  if (next != a.free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size == base) {
      prev->second = FreeRange{prev->second.size + size, now};
      return;
    }
  }
  a.free_.emplace(base, FreeRange{size, now});
}

#else  // no mmap: every block from c10's allocator

BlockReusingCpuAllocator::~BlockReusingCpuAllocator() = default;
c10::DataPtr BlockReusingCpuAllocator::allocate(std::size_t n) MAMBA_LRP_ALLOCATE_CONST {
  return c10::GetDefaultCPUAllocator()->allocate(n);
}
void* BlockReusingCpuAllocator::take(std::size_t) const { return nullptr; }
std::size_t BlockReusingCpuAllocator::unmap_oldest() const { return 0; }
void BlockReusingCpuAllocator::release(void*) {}
void BlockReusingCpuAllocator::raw_release(void* data) { c10::GetDefaultCPUAllocator()->raw_deleter()(data); }

#endif

LargeBlockStats BlockReusingCpuAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void advise_huge_pages_for_heap() {
#if defined(__GLIBC__) && defined(MAMBA_LRP_HAS_MMAP) && defined(MADV_HUGEPAGE)
  // glibc pads a heap extension by M_TOP_PAD: one allocation from the heap (not mapped on its
  // own: M_MMAP_THRESHOLD, as retain_freed_memory sets it) grows the heap by
  // kHeapHugePageBytes at once; freed, the bytes stay in the heap (M_TRIM_THRESHOLD), and the
  // part of them past the next huge-page boundary is advised for huge pages. Later growth
  // is padded by glibc's default again, in normal pages.
  constexpr std::size_t kHeapHugePageBytes = std::size_t(512) << 20;
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  mallopt(M_TOP_PAD, static_cast<int>(kHeapHugePageBytes));
  void* grow = std::malloc(kHugePageBytes);
  if (grow == nullptr) return;
  const auto first = reinterpret_cast<std::uintptr_t>(grow);
  std::free(grow);
  mallopt(M_TOP_PAD, 128 * 1024);  // glibc's default (DEFAULT_TOP_PAD)
  char* const top = static_cast<char*>(sbrk(0));
  char* const from = reinterpret_cast<char*>((first + kHugePageBytes) / kHugePageBytes * kHugePageBytes);
  // Only a range of the heap itself: where brk failed, glibc mapped the block elsewhere and the
  // span to the break could cover other mappings.
  if (top != reinterpret_cast<char*>(-1) && top > from &&
      static_cast<std::size_t>(top - from) <= kHeapHugePageBytes + 2 * kHugePageBytes)
    madvise(from, static_cast<std::size_t>(top - from), MADV_HUGEPAGE);
#endif
}

void retain_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);  // small blocks come from the heap, and go back to it
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());  // never shrink the heap
#endif
  if (installed) return;
  // Never destroyed: tensors may be freed during static teardown.
  installed = new BlockReusingCpuAllocator();
  c10::SetCPUAllocator(installed, /*priority=*/1);
}

}  // namespace mamba_lrp
