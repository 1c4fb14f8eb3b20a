// The executables' BLAS thread count (csrc/app/blas_threads.h): OpenBLAS's threads end up as
// libtorch's intra-op threads, read back from OpenBLAS itself, unless the environment chose them.
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <cstdlib>

#include "csrc/app/blas_threads.h"
// After c10's headers: Catch's CHECK, not c10's logging CHECK.
#include <catch2/catch.hpp>

TEST_CASE("OpenBLAS runs as many threads as libtorch's intra-op pool", "[threads]") {
  using GetThreads = int (*)();
  using SetThreads = void (*)(int);
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  const bool chosen = std::getenv("OPENBLAS_NUM_THREADS") || std::getenv("GOTO_NUM_THREADS") || std::getenv("OMP_NUM_THREADS");
  if (get == nullptr || set == nullptr || chosen) {
    CHECK(mamba_lrp::match_blas_threads_to_intra_op() == 0);  // nothing to set, or not ours to set
    return;
  }
  const int before = get();
  const int other = at::get_num_threads() + 1;  // a count the call must change
  set(other);
  REQUIRE(get() == other);
  CHECK(mamba_lrp::match_blas_threads_to_intra_op() == at::get_num_threads());
  CHECK(get() == at::get_num_threads());
  set(before);
}
