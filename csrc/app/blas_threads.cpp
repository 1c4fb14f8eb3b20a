#include "csrc/app/blas_threads.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace mamba_lrp {

int match_blas_threads_to_intra_op() {
  for (const char* chosen : {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"})
    if (std::getenv(chosen) != nullptr) return 0;
#if defined(__unix__) || defined(__APPLE__)
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return 0;
  const int threads = at::get_num_threads();
  set(threads);
  return threads;
#else
  return 0;
#endif
}

}  // namespace mamba_lrp
