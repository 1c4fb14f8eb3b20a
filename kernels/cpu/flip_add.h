// Reversing rows along the sequence, with an optional addend: the glue of Vision Mamba's
// bidirectional mixer (the backward scan runs on the time-flipped sequence).
// out[b,c,t] = scale * (a[b,c,t] + x[b,c,L-1-t]), a optional. Framework-free; float, double.
#pragma once
#include <cstdint>

#include "kernels/cpu/parallel.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

template <typename T>
struct FlipAddParams {
  int64_t batch = 0, channels = 0, seqlen = 0;
  const T* x = nullptr;    int64_t x_batch_stride = 0, x_channel_stride = 0;
  const T* a = nullptr;    int64_t a_batch_stride = 0, a_channel_stride = 0;   // optional
  T* out = nullptr;        int64_t out_batch_stride = 0, out_channel_stride = 0;
  T scale = 1;
};
// Every row (…, seqlen) has unit stride; out may not overlap x or a.

void flip_add(const FlipAddParams<float>& p, ParallelFor parallel_for);
void flip_add(const FlipAddParams<double>& p, ParallelFor parallel_for);

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
