// The depthwise causal conv1d in front of every SSM (groups = channels, K-1 zeros on the
// left, output as long as the input), forward and input gradient, without autograd. On CPU
// in float32/float64 through kernels/cpu/causal_conv1d; elsewhere through ATen's conv1d.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace mamba_lrp {

// The convolution c and the SiLU that follows it, each computed only when asked for.
struct ConvSiluParts {
  at::Tensor conv;     // c
  at::Tensor silu;     // silu(c) = c sigmoid(c)
  at::Tensor sigmoid;  // sigmoid(c)
};

// x (B, C, L), weight (C, 1, K), bias (C) -> parts of shape (B, C, L), in one pass on CPU.
ConvSiluParts causal_conv1d_silu(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                 bool conv, bool silu, bool sigmoid);

// The input gradient of causal_conv1d for the output gradient grad_out * scale (scale
// optional, same shape): (B, C, L). The weights' gradients are not computed.
// overwrite_grad_out: written over grad_out where the CPU kernel runs (grad_out is then
// clobbered; for a caller whose grad_out is its own temporary).
at::Tensor causal_conv1d_input_grad(const at::Tensor& grad_out, const c10::optional<at::Tensor>& scale,
                                    const at::Tensor& weight, bool overwrite_grad_out = false);

}  // namespace mamba_lrp
