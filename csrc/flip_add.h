// scale * (a + x flipped along the sequence) for (B, C, L) tensors, a optional: on CPU in
// float32/float64 through kernels/cpu/flip_add (one pass), elsewhere through ATen. No autograd.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace mamba_lrp {

at::Tensor flip_add(const at::Tensor& x, const c10::optional<at::Tensor>& a = c10::nullopt, double scale = 1.0);
// The same into out (B, C, L), which may be a view (any batch/channel strides, unit L stride).
void flip_add_into(const at::Tensor& out, const at::Tensor& x, const c10::optional<at::Tensor>& a = c10::nullopt,
                   double scale = 1.0);

}  // namespace mamba_lrp
