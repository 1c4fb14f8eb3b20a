// Row loops compiled for AVX-512, AVX2 and the baseline (the reversed read becomes a
// vector load and a lane permutation).
#include "kernels/cpu/flip_add.h"

#include <algorithm>

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace {

template <typename T>
inline __attribute__((always_inline)) void row_impl(const T* __restrict x, const T* __restrict a, T scale, int64_t L,
                                                    T* __restrict out) {
  const T* xr = x + L - 1;
  if (a) {
    if (scale == T(1))
      for (int64_t t = 0; t < L; ++t) out[t] = a[t] + xr[-t];
    else
      for (int64_t t = 0; t < L; ++t) out[t] = scale * (a[t] + xr[-t]);
  } else {
    if (scale == T(1))
      for (int64_t t = 0; t < L; ++t) out[t] = xr[-t];
    else
      for (int64_t t = 0; t < L; ++t) out[t] = scale * xr[-t];
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void row(const float* x, const float* a, float scale,
                                                                      int64_t L, float* out) {
  row_impl(x, a, scale, L, out);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void row(const double* x, const double* a, double scale,
                                                                      int64_t L, double* out) {
  row_impl(x, a, scale, L, out);
}

template <typename T>
void flip_add_impl(const FlipAddParams<T>& p, ParallelFor parallel_for) {
  auto body = [&p](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / p.channels, c = r % p.channels;
      row(p.x + b * p.x_batch_stride + c * p.x_channel_stride,
          p.a ? p.a + b * p.a_batch_stride + c * p.a_channel_stride : nullptr, p.scale, p.seqlen,
          p.out + b * p.out_batch_stride + c * p.out_channel_stride);
    }
  };
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(p.seqlen, 1));
  run_parallel(parallel_for, p.batch * p.channels, grain, body);
}

}  // namespace

void flip_add(const FlipAddParams<float>& p, ParallelFor pf) { flip_add_impl(p, pf); }
void flip_add(const FlipAddParams<double>& p, ParallelFor pf) { flip_add_impl(p, pf); }

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
