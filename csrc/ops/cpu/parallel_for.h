// The parallel-for the framework-free CPU kernels (kernels/cpu/parallel.h) run with:
// ATen's intra-op thread pool.
#pragma once
#include <ATen/Parallel.h>

#include "kernels/cpu/parallel.h"

namespace mamba_lrp {
namespace ops {

inline void aten_parallel_for(int64_t n, int64_t grain, void* ctx, kernels::cpu::ParallelBody body) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(ctx, begin, end); });
}

}  // namespace ops
}  // namespace mamba_lrp
