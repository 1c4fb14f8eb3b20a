// The executables' CPU allocator (csrc/app/process_memory.h): large blocks are reused, split and
// merged, small ones go elsewhere, contents survive every reuse, and what is mapped never
// exceeds the most that was in use at once. Each test makes its own allocator (nothing is
// installed process-wide here).
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "csrc/app/process_memory.h"
// After c10's headers: Catch's CHECK, not c10's logging CHECK.
#include <catch2/catch.hpp>

namespace {

using mamba_lrp::BlockReusingCpuAllocator;
constexpr std::size_t MiB = std::size_t(1) << 20;

// What the allocator charges for n bytes: a 64-byte header, rounded up to pages.
std::size_t charged(std::size_t n) {
  const std::size_t page = 4096;
  return (n + 64 + page - 1) / page * page;
}

// The kernel's flags of the mapping that holds address p (/proc/self/smaps "VmFlags"), or ""
// when none does: "hg" is there once the range was advised for huge pages (MADV_HUGEPAGE).
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool kernel_has_transparent_huge_pages() { return std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good(); }

constexpr std::uintptr_t kHugePage = 2 * MiB;

}  // namespace

TEST_CASE("a fresh block of 2 MiB or more starts on a huge-page boundary, advised for huge pages", "[memory]") {
  BlockReusingCpuAllocator a;
  c10::DataPtr p = a.allocate(5 * MiB);
  // The 64-byte header sits at the start of the mapping.
  CHECK((reinterpret_cast<std::uintptr_t>(p.get()) - 64) % kHugePage == 0);
  std::memset(p.get(), 3, 5 * MiB);
  CHECK(a.stats().in_use_bytes == charged(5 * MiB));  // exactly what it charges stays mapped
  if (!kernel_has_transparent_huge_pages()) {
    WARN("this kernel has no transparent huge pages: the advice is not checked");
    return;
  }
  CHECK(vm_flags_of(p.get()).find(" hg") != std::string::npos);
  CHECK(vm_flags_of(static_cast<char*>(p.get()) + 5 * MiB - 1).find(" hg") != std::string::npos);
}

// AddressSanitizer replaces malloc with its own mmap-based allocator: the brk heap stays
// (almost) empty, so there is nothing of ours to check there.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMallocIsAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kMallocIsAsan = true;
#else
constexpr bool kMallocIsAsan = false;
#endif
#else
constexpr bool kMallocIsAsan = false;
#endif

TEST_CASE("the heap is advised for huge pages up to its top", "[memory]") {
  if (kMallocIsAsan) {
    WARN("built with AddressSanitizer: malloc does not use the brk heap, nothing to check");
    return;
  }
  mamba_lrp::advise_huge_pages_for_heap();
  const char* top = static_cast<const char*>(sbrk(0));
  if (!kernel_has_transparent_huge_pages()) {
    WARN("this kernel has no transparent huge pages: nothing to check");
    return;
  }
  CHECK(vm_flags_of(top - 1).find(" hg") != std::string::npos);
}

TEST_CASE("large blocks of one size are reused, small ones are not ours", "[memory]") {
  BlockReusingCpuAllocator a;
  void* first = nullptr;
  {
    c10::DataPtr p = a.allocate(3 * MiB);
    first = p.get();
    REQUIRE(reinterpret_cast<std::uintptr_t>(first) % 64 == 0);
    std::memset(first, 7, 3 * MiB);
    CHECK(a.stats().in_use_bytes == charged(3 * MiB));
  }
  CHECK(a.stats().in_use_bytes == 0);
  CHECK(a.stats().cached_bytes == charged(3 * MiB));
  {
    c10::DataPtr p = a.allocate(3 * MiB);
    CHECK(p.get() == first);
  }
  c10::DataPtr small = a.allocate(1000);
  REQUIRE(small.get() != nullptr);
  REQUIRE(reinterpret_cast<std::uintptr_t>(small.get()) % 64 == 0);
  std::memset(small.get(), 1, 1000);
  const auto s = a.stats();
  CHECK(s.maps == 1);
  CHECK(s.reuses == 1);
  CHECK(s.unmaps == 0);
}

TEST_CASE("a kept range is split for smaller blocks and merged again when they are freed", "[memory]") {
  BlockReusingCpuAllocator a;
  { c10::DataPtr big = a.allocate(8 * MiB); }
  c10::DataPtr x = a.allocate(3 * MiB);
  c10::DataPtr y = a.allocate(4 * MiB);
  CHECK(a.stats().maps == 1);  // both came out of the kept 8 MiB
  auto* xb = static_cast<unsigned char*>(x.get());
  auto* yb = static_cast<unsigned char*>(y.get());
  CHECK((xb + 3 * MiB <= yb || yb + 4 * MiB <= xb));  // disjoint
  std::memset(xb, 0x11, 3 * MiB);
  std::memset(yb, 0x22, 4 * MiB);
  CHECK(std::all_of(xb, xb + 3 * MiB, [](unsigned char c) { return c == 0x11; }));
  x.clear();
  y.clear();
  // The pieces merged back: one 8 MiB block fits without a new mapping.
  c10::DataPtr again = a.allocate(8 * MiB);
  CHECK(a.stats().maps == 1);
  CHECK(a.stats().unmaps == 0);
}

TEST_CASE("a block that no kept range holds unmaps kept ranges first", "[memory]") {
  BlockReusingCpuAllocator a;
  { c10::DataPtr p = a.allocate(2 * MiB); }
  { c10::DataPtr p = a.allocate(16 * MiB); }
  const auto s = a.stats();
  CHECK(s.maps == 2);
  CHECK(s.unmaps == 1);
  CHECK(s.cached_bytes == charged(16 * MiB));
  CHECK(s.peak_mapped_bytes == charged(16 * MiB));  // never both mapped
}

TEST_CASE("random traffic: contents intact, mapped bytes within the peak in use", "[memory]") {
  BlockReusingCpuAllocator a;
  std::mt19937 rng(3);
  const std::size_t sizes[] = {1 * MiB, 2 * MiB + 100, 3 * MiB, 5 * MiB + 4000, 12 * MiB, 25 * MiB};
  struct Live {
    c10::DataPtr p;
    std::size_t n;
    unsigned char tag;
  };
  std::vector<Live> live;
  std::size_t in_use = 0, peak_in_use = 0;
  for (int step = 0; step < 400; ++step) {
    if (!live.empty() && (live.size() > 12 || rng() % 2)) {
      const std::size_t i = rng() % live.size();
      const Live& l = live[i];
      const auto* b = static_cast<const unsigned char*>(l.p.get());
      // A sample of bytes (the ends and a stride) still hold the tag.
      bool intact = b[0] == l.tag && b[l.n - 1] == l.tag;
      for (std::size_t k = 0; k < l.n; k += 4093) intact = intact && b[k] == l.tag;
      REQUIRE(intact);
      in_use -= charged(l.n);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      const std::size_t n = sizes[rng() % 6];
      const auto tag = static_cast<unsigned char>(1 + rng() % 250);
      c10::DataPtr p = a.allocate(n);
      std::memset(p.get(), tag, n);
      live.push_back({std::move(p), n, tag});
      in_use += charged(n);
      peak_in_use = std::max(peak_in_use, in_use);
    }
    REQUIRE(a.stats().in_use_bytes == in_use);
  }
  const auto s = a.stats();
  CHECK(s.peak_mapped_bytes <= peak_in_use);
  CHECK(s.reuses > s.maps);
}

TEST_CASE("blocks from two threads at once", "[memory]") {
  BlockReusingCpuAllocator a;
  auto work = [&a](unsigned char tag) {
    for (int i = 0; i < 200; ++i) {
      c10::DataPtr p = a.allocate((1 + i % 3) * MiB);
      auto* b = static_cast<unsigned char*>(p.get());
      std::memset(b, tag, MiB);
      for (std::size_t k = 0; k < MiB; k += 997)
        if (b[k] != tag) throw std::runtime_error("block shared between threads");
    }
  };
  std::thread t1(work, 1), t2(work, 2);
  t1.join();
  t2.join();
  CHECK(a.stats().in_use_bytes == 0);
}

TEST_CASE("an impossible size is an error, not a crash", "[memory]") {
  BlockReusingCpuAllocator a;
  CHECK_THROWS_WITH(a.allocate(std::size_t(1) << 62), Catch::Contains("out of memory"));
  CHECK(a.stats().in_use_bytes == 0);
}

TEST_CASE("the raw interface frees small and large blocks alike", "[memory]") {
  BlockReusingCpuAllocator a;
  REQUIRE(a.raw_deleter() != nullptr);
  void* small = a.raw_allocate(100);
  void* large = a.raw_allocate(2 * MiB);
  CHECK(a.stats().in_use_bytes == charged(2 * MiB));
  a.raw_deallocate(small);
  a.raw_deallocate(large);
  CHECK(a.stats().in_use_bytes == 0);
  c10::DataPtr none = a.allocate(0);  // an empty tensor's storage
}
