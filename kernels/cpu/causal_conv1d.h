// Depthwise causal conv1d over (batch, channels, seqlen), the convolution in front of every
// SSM: out[b,c,t] = bias[c] + sum_k w[c,k] x[b,c,t-(K-1)+k], with zeros before t = 0.
// Framework-free; float and double. Every (…, seqlen) row has unit stride.
#pragma once
#include <cstdint>

#include "kernels/cpu/parallel.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

template <typename T>
struct CausalConv1dParams {
  int64_t batch = 0, channels = 0, seqlen = 0, width = 0;
  const T* x = nullptr;  int64_t x_batch_stride = 0, x_channel_stride = 0;
  const T* weight = nullptr;  // (channels, width), dense
  const T* bias = nullptr;    // (channels), optional
  // Outputs, each (batch, channels, seqlen) dense and optional (at least one set): the
  // convolution c, silu(c), sigmoid(c) (the SiLU that follows it, in the same pass).
  T* out = nullptr;
  T* silu = nullptr;
  T* sigmoid = nullptr;
};

// The input gradient of that convolution for the output gradient grad_out * scale (scale
// optional; both dense like out): grad_x[s] = sum_k w[k] g[s+(K-1)-k] over s+(K-1)-k < seqlen.
template <typename T>
struct CausalConv1dBwdParams {
  int64_t batch = 0, channels = 0, seqlen = 0, width = 0;
  const T* grad_out = nullptr;
  const T* scale = nullptr;
  const T* weight = nullptr;
  T* grad_x = nullptr;  // dense; may be grad_out itself (each row is read from a copy then)
};

void causal_conv1d_fwd(const CausalConv1dParams<float>& p, ParallelFor parallel_for);
void causal_conv1d_fwd(const CausalConv1dParams<double>& p, ParallelFor parallel_for);
void causal_conv1d_bwd(const CausalConv1dBwdParams<float>& p, ParallelFor parallel_for);
void causal_conv1d_bwd(const CausalConv1dBwdParams<double>& p, ParallelFor parallel_for);

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
