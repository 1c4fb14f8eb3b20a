// Mamba-2 for generation: the mixer as a recurrence, O(1) per token (models/mamba2.h).
// The state per head is a P x N matrix S: S <- exp(Delta A) S + Delta x B^T, y = S C + D x,
// and the conv keeps its last K-1 inputs (of xBC).
#include <ATen/ATen.h>

#include "csrc/ops/ops.h"
#include "models/mamba2.h"

namespace mamba_lrp {

at::Tensor Mamba2MixerImpl::prefill(const at::Tensor& hidden, const at::Tensor& mask, SsmState& state) {
  at::NoGradGuard plain_layers;
  const PropagationContext plain;
  const ScanParts s = scan_parts(hidden, mask, plain, /*conv_sigmoid=*/false, &state);
  return gated_out(s.y, s.z, plain);                                              // (B, L, H)
}

at::Tensor Mamba2MixerImpl::step(const at::Tensor& hidden, SsmState& state) {
  at::NoGradGuard plain_layers;
  const MambaConfig& c = config_;
  const int64_t batch = hidden.size(0);
  const int64_t I = c.intermediate_size(), heads = c.num_heads(), P = c.head_dim(), G = c.n_groups(),
                N = c.state_size(), conv_dim = c.conv_dim();
  // One product for z, xBC and dt: a matrix-vector product for one row (batch 1).
  const rules::LayerRule plain;
  const at::Tensor proj = rules::linear_with_rule(hidden, in_proj->weight, in_proj->opt_bias(), plain);  // (B, I + conv_dim + heads)
  const at::Tensor z = proj.narrow(1, 0, I);                                      // (B, I)
  const at::Tensor window = at::cat({state.conv_window, proj.narrow(1, I, conv_dim).unsqueeze(-1)}, -1);  // (B, conv_dim, K)
  at::Tensor conv = (window * conv1d->weight.squeeze(1)).sum(-1);                 // (B, conv_dim)
  if (conv1d->bias.defined()) conv = conv + conv1d->bias;
  const at::Tensor xbc = at::silu(conv);                                          // (B, conv_dim)
  const at::Tensor x = xbc.narrow(1, 0, I).reshape({batch, heads, P});            // (B, heads, P)
  // Head h reads group h / (heads / G) of B and C.
  auto per_head = [&](int64_t begin) {
    return xbc.narrow(1, begin, G * N).reshape({batch, G, N}).repeat_interleave(heads / G, 1);  // (B, heads, N)
  };
  const at::Tensor Bh = per_head(I), Ch = per_head(I + G * N);
  const at::Tensor delta = delta_of(proj.narrow(1, I + conv_dim, heads).unsqueeze(-1)).squeeze(-1);  // (B, heads)
  const at::Tensor decay = at::exp(delta * -at::exp(A_log));                      // (B, heads)
  // S <- exp(Delta A) S + Delta x B^T ; y = S C + D x
  const at::Tensor S = decay.unsqueeze(-1).unsqueeze(-1) * state.ssm.reshape({batch, heads, P, N}) +
                       (delta.unsqueeze(-1) * x).unsqueeze(-1) * Bh.unsqueeze(2);  // (B, heads, P, N)
  const at::Tensor y = (S * Ch.unsqueeze(2)).sum(-1) + D.unsqueeze(-1) * x;       // (B, heads, P)
  state.ssm = S.reshape({batch, I, N});
  state.conv_window = window.narrow(2, 1, window.size(2) - 1).contiguous();       // (B, conv_dim, K-1)
  const at::Tensor v = norm->forward(y.reshape({batch, I}), z, rules::RuleSet{});  // (B, I)
  return rules::linear_with_rule(v, out_proj->weight, out_proj->opt_bias(), plain);  // (B, H)
}

}  // namespace mamba_lrp
