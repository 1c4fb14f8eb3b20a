// Linear maps between the token-major layout (B, L, features) of the residual stream and the
// channel-major layout (B, channels, L) that conv1d and the scan read, each with its layer
// role's rule (rules/propagation.h) in the backward.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "rules/propagation.h"

namespace mamba_lrp {

// The linear map between the token-major layout (B, L, features) of the residual stream
// and the channel-major layout (B, channels, L) that conv1d and the scan read. With LRP-0
// each is one matrix product with a transposed operand, whose input gradient also comes out
// in the input's own layout: no transposing copies either way. Other rules go through
// linear_with_rule and a transposed view.
at::Tensor linear_to_channels(const at::Tensor& x /* (B, L, in) */, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, const rules::LayerRule& rule);  // (B, out, L)
at::Tensor linear_from_channels(const at::Tensor& x /* (B, in, L) */, const at::Tensor& weight,
                                const c10::optional<at::Tensor>& bias, const rules::LayerRule& rule);  // (B, L, out) view
// Channel-major in and out (x_proj and dt_proj, between conv1d and the scan).
at::Tensor linear_on_channels(const at::Tensor& x /* (B, in, L) */, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, const rules::LayerRule& rule);  // (B, out, L)

}  // namespace mamba_lrp
