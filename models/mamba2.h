// The Mamba-2 (SSD) mixer (DESIGN.md §1b; mamba_ssm's Mamba2, Hugging Face's Mamba2Mixer),
// tensor names as both: in_proj, conv1d, dt_bias, A_log, D, norm, out_proj. The language
// model around it is MambaForCausalLM (models/mamba.h), whose blocks hold this mixer when
// the config is a Mamba-2 one: explanation, evaluation and training treat both alike.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "models/mamba_config.h"
#include "models/propagation_context.h"
#include "models/ssm_branch.h"
#include "models/weights.h"

namespace mamba_lrp {

// RMSNorm of v = y * silu(z) over each group of d_inner / n_groups channels (mamba_ssm's
// RMSNormGated, norm_before_gate = False), times the weight. Rules: SiLU identity on z, half
// rule on y * silu(z), rsqrt constant, each when the context says so.
class GatedRMSNormImpl : public torch::nn::Module {
 public:
  GatedRMSNormImpl(int64_t dim, int64_t groups, double eps);
  // y, z: (B, L, dim) -> (B, L, dim)
  at::Tensor forward(const at::Tensor& y, const at::Tensor& z, const rules::RuleSet& rules);
  // The plain layer (no rules) on channel-major y, z (B, dim, L) -> (B, dim, L); rsqrt_out
  // (optional) receives the rsqrt of each group's mean square, (B, G, 1, L).
  at::Tensor forward_channels(const at::Tensor& y, const at::Tensor& z, at::Tensor* rsqrt_out = nullptr) const;
  at::Tensor weight;  // (dim)
  int64_t groups;
  double eps;
};
TORCH_MODULE(GatedRMSNorm);

class Mamba2MixerImpl : public torch::nn::Module {
 public:
  explicit Mamba2MixerImpl(const MambaConfig& config);
  // hidden (B, L, H); mask (B, L) of 0/1 or undefined (the conv's input and output are
  // zeroed at padded positions, as the Mamba-1 mixer does) -> (B, L, H).
  // Under the default explanation (uses_explanation_node) the mixer is one autograd node
  // that keeps only what its backward needs (models/mamba2_explanation_node.cpp).
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx);

  // forward() in two halves. scan_parts: in_proj, the conv and its SiLU, Delta and the scan,
  // each recorded by the rules of ctx (plain under NoGradGuard; there conv_sigmoid also returns
  // the sigmoid of the conv output of the x channels, and `state` receives what generation
  // continues from: see prefill); gated_out: the gated norm of y with z, then out_proj: y, z
  // (B, I, L) -> (B, L, H) (plain: norm_rsqrt receives the norm's rsqrt, (B, G, 1, L)).
  struct ScanParts {
    at::Tensor z, x, y;     // (B, I, L) each, channel-major
    at::Tensor B, C;        // (B, G, N, L), views of the conv's output
    at::Tensor delta;       // (B, heads, L)
    at::Tensor A;           // (heads)
    at::Tensor conv_sigmoid;  // (B, I, L) when asked for
  };
  ScanParts scan_parts(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx,
                       bool conv_sigmoid = false, SsmState* state = nullptr);
  at::Tensor gated_out(const at::Tensor& y, const at::Tensor& z, const PropagationContext& ctx,
                       at::Tensor* norm_rsqrt = nullptr);
  // Whether forward() runs the explanation node: every MambaLRP rule on, LRP-0 on in_proj,
  // conv1d and out_proj, no trace, no trained (requires_grad) weight, and grad mode.
  bool uses_explanation_node(const PropagationContext& ctx) const;
  const MambaConfig& config() const { return config_; }

  // Generation (models/mamba2_step.cpp), nothing recorded. prefill: forward()'s values
  // (plain layers) that also leave in `state` what a step needs after the last position:
  // conv_window (B, I + 2GN, K-1) = the last K-1 masked xBC inputs of the conv, ssm (B, I, N)
  // = the state, channel h P + p of head h (P x N per head). step: one token, hidden (B, H)
  // -> (B, H), advancing `state`: O(1) in the length so far.
  at::Tensor prefill(const at::Tensor& hidden, const at::Tensor& mask, SsmState& state);
  at::Tensor step(const at::Tensor& hidden, SsmState& state);
  // Delta = softplus(dt + dt_bias), clamped to time_step_limit when that is not (0, inf);
  // dt (B, heads, L) -> (B, heads, L).
  at::Tensor delta_of(const at::Tensor& dt) const;

  Weights in_proj{nullptr};   // (2 d_inner + 2 G N + heads, H): [z | x B C | dt]
  Weights conv1d{nullptr};    // (d_inner + 2 G N, 1, K) depthwise over x, B, C
  Weights out_proj{nullptr};  // (H, d_inner)
  GatedRMSNorm norm{nullptr};
  at::Tensor dt_bias, A_log, D;  // (heads) each

 private:
  // Rows begin .. begin + n of in_proj applied to hidden (B, L, H), channel-major: (B, n, L).
  at::Tensor in_proj_rows(const at::Tensor& hidden, int64_t begin, int64_t n, const rules::LayerRule& rule) const;

  MambaConfig config_;
};
TORCH_MODULE(Mamba2Mixer);

// The mixer's forward as one autograd node under the default explanation (every MambaLRP
// rule, LRP-0 on its linear layers; Mamba2MixerImpl::uses_explanation_node says when). Its
// backward is what the composition of rule ops computes, to rounding, but it keeps far less:
// the scan's output y (B, I, L), its operands Delta, B, C, the gated norm's rsqrt (B, G, 1, L)
// and either (recompute false) z and the conv's sigmoid, 3.2 of the (B, L, d_inner) tensors
// where the composition keeps about 8,
// or (recompute true) the mixer's input (B, L, H), 1.7 of them, recomputing z and the conv in
// the backward from rows [0, 2 d_inner) of in_proj. hidden (B, L, H), mask (B, L) or undefined.
at::Tensor mamba2_mixer_explanation_node(Mamba2MixerImpl& mixer, const at::Tensor& hidden, const at::Tensor& mask,
                                         bool recompute);

}  // namespace mamba_lrp
