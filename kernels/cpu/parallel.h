// How the framework-free CPU kernels run in parallel: the torch-facing caller passes a
// parallel-for (at::parallel_for in csrc/), so the kernels need no ATen.
#pragma once
#include <cstdint>

namespace mamba_lrp {
namespace kernels {
namespace cpu {

// body(ctx, begin, end) runs items [begin, end); parallel_for splits [0, n) among threads.
using ParallelBody = void (*)(void* ctx, int64_t begin, int64_t end);
using ParallelFor = void (*)(int64_t n, int64_t grain, void* ctx, ParallelBody body);

// parallel_for over a callable fn(begin, end).
template <typename Fn>
void run_parallel(ParallelFor parallel_for, int64_t n, int64_t grain, Fn fn) {
  parallel_for(n, grain, &fn, [](void* ctx, int64_t begin, int64_t end) { (*static_cast<Fn*>(ctx))(begin, end); });
}

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
