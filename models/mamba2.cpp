#include "models/mamba2.h"

#include <cmath>
#include <limits>

#include "csrc/ops/ops.h"
#include "models/channel_layout.h"
#include "models/ssm_branch.h"

namespace mamba_lrp {

// ---- Gated RMSNorm ---------------------------------------------------------------------------

GatedRMSNormImpl::GatedRMSNormImpl(int64_t dim, int64_t groups_, double eps_) : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor GatedRMSNormImpl::forward(const at::Tensor& y, const at::Tensor& z, const rules::RuleSet& r) {
  const at::Tensor gate = r.silu ? ops::silu_identity(z) : at::silu(z);           // (B, L, dim)
  const at::Tensor v = r.gate ? ops::gate_half(y, gate) : y * gate;               // (B, L, dim)
  std::vector<int64_t> grouped = v.sizes().vec();                                 // (B, L, G, dim / G)
  grouped.back() = groups;
  grouped.push_back(v.size(-1) / groups);
  const at::Tensor vg = v.reshape(grouped);
  const at::Tensor normed = r.norm ? ops::rms_norm_identity(vg, c10::nullopt, eps)
                                   : vg * at::rsqrt(vg.square().mean(-1, true) + eps);
  return normed.reshape(v.sizes()) * weight;                                      // (B, L, dim)
}

at::Tensor GatedRMSNormImpl::forward_channels(const at::Tensor& y, const at::Tensor& z, at::Tensor* rsqrt_out) const {
  const int64_t batch = y.size(0), dim = y.size(1), L = y.size(2);
  const at::Tensor vg = (y * at::silu(z)).view({batch, groups, dim / groups, L});  // (B, G, dim / G, L)
  const at::Tensor rs = at::rsqrt(vg.square().mean(2, true).add_(eps));            // (B, G, 1, L)
  if (rsqrt_out) *rsqrt_out = rs;
  return (vg * rs).view({batch, dim, L}).mul_(weight.view({1, dim, 1}));           // (B, dim, L)
}

// ---- Mixer ---------------------------------------------------------------------------------

at::Tensor Mamba2MixerImpl::in_proj_rows(const at::Tensor& hidden, int64_t begin, int64_t n,
                                         const rules::LayerRule& rule) const {
  const c10::optional<at::Tensor> b =
      in_proj->bias.defined() ? c10::optional<at::Tensor>(in_proj->bias.narrow(0, begin, n)) : c10::nullopt;
  return linear_to_channels(hidden, in_proj->weight.narrow(0, begin, n), b, rule);  // (B, n, L)
}

at::Tensor Mamba2MixerImpl::delta_of(const at::Tensor& dt) const {
  const MambaConfig& c = config_;
  at::Tensor delta = at::softplus(dt + dt_bias.unsqueeze(-1));                    // (B, heads, L)
  // (A maximum beyond the dtype's range clamps nothing: it is left out, as infinity is.)
  const double top = delta.scalar_type() == at::kFloat ? std::numeric_limits<float>::max()
                                                        : std::numeric_limits<double>::max();
  const bool clamp_max = c.time_step_max_limit() < top;
  if (c.time_step_min_limit() > 0 || clamp_max)
    delta = at::clamp(delta, c.time_step_min_limit(),
                      clamp_max ? c10::optional<at::Scalar>(c.time_step_max_limit()) : c10::nullopt);
  return delta;
}

Mamba2MixerImpl::Mamba2MixerImpl(const MambaConfig& c) : config_(c) {
  const int64_t H = c.hidden_size(), I = c.intermediate_size(), heads = c.num_heads(), conv_dim = c.conv_dim();
  const int64_t proj = I + conv_dim + heads;
  in_proj = register_module("in_proj", Weights(std::vector<int64_t>{proj, H}, c.use_bias() ? proj : 0));
  conv1d = register_module("conv1d", Weights(std::vector<int64_t>{conv_dim, 1, c.conv_kernel()},
                                             c.use_conv_bias() ? conv_dim : 0));
  out_proj = register_module("out_proj", Weights(std::vector<int64_t>{H, I}, c.use_bias() ? H : 0));
  norm = register_module("norm", GatedRMSNorm(I, c.n_groups(), c.layer_norm_epsilon()));
  // Deterministic stand-ins for mamba_ssm's random initialisation (train --init): A spread
  // over [1, 16] (mamba_ssm draws it uniformly there), D = 1, softplus(dt_bias) = 0.01.
  A_log = register_parameter("A_log", torch::log(torch::linspace(1, 16, heads, torch::kFloat32)));
  D = register_parameter("D", torch::ones({heads}));
  dt_bias = register_parameter("dt_bias", torch::full({heads}, std::log(std::expm1(0.01)), torch::kFloat32));
}

Mamba2MixerImpl::ScanParts Mamba2MixerImpl::scan_parts(const at::Tensor& hidden, const at::Tensor& mask,
                                                         const PropagationContext& ctx, bool conv_sigmoid,
                                                         SsmState* state) {
  TORCH_CHECK(!(conv_sigmoid || state) || !at::GradMode::is_enabled(),
              "scan_parts: conv_sigmoid and state only without grad mode");
  const MambaConfig& c = config_;
  const int64_t batch = hidden.size(0), L = hidden.size(1);
  const int64_t I = c.intermediate_size(), heads = c.num_heads(), G = c.n_groups(), N = c.state_size(),
                K = c.conv_kernel(), conv_dim = c.conv_dim();
  const rules::RuleSet& r = ctx.rules;
  const rules::Composite& comp = ctx.composite;
  ScanParts s;

  // in_proj as three products (z, xBC, dt), each channel-major, rather than slices of one.
  const rules::LayerRule in_rule = comp.rule_for("in_proj");
  auto rows = [&](int64_t begin, int64_t n) { return in_proj_rows(hidden, begin, n, in_rule); };
  s.z = rows(0, I);                                                               // (B, I, L)
  at::Tensor xbc = rows(I, conv_dim);                                             // (B, I + 2GN, L)
  at::Tensor dt = rows(I + conv_dim, heads);                                      // (B, heads, L)

  // xBC <- silu(causal depthwise conv(xBC)), masked before and after.
  const at::Tensor m3 = mask.defined() ? mask.unsqueeze(1).to(xbc.scalar_type()) : at::Tensor();
  if (m3.defined()) xbc = xbc * m3;
  // The conv's next window for generation: its last K-1 (masked) inputs, zeros in front when L < K-1.
  if (state) state->conv_window = at::constant_pad_nd(xbc, {K - 1, 0}).narrow(2, L, K - 1).contiguous();
  if (!at::GradMode::is_enabled()) {
    const ops::ConvSiluParts parts = ops::_causal_conv1d_silu(xbc, conv1d->weight, conv1d->opt_bias(),
                                                              ops::kSilu | (conv_sigmoid ? ops::kSigmoid : 0));
    xbc = parts.silu;
    if (conv_sigmoid) s.conv_sigmoid = parts.sigmoid.narrow(1, 0, I).clone(at::MemoryFormat::Contiguous);
  } else {
    const at::Tensor conv = rules::conv1d_with_rule(at::constant_pad_nd(xbc, {K - 1, 0}), conv1d->weight,
                                                    conv1d->opt_bias(), 0, conv_dim, comp.rule_for("conv1d"));
    xbc = r.silu ? ops::silu_identity(conv) : at::silu(conv);
  }
  if (m3.defined()) xbc = xbc * m3;
  s.x = xbc.narrow(1, 0, I);                                                      // (B, I, L)
  // The SSM rule holds B, C and Delta constant: they are not recorded at all.
  s.B = xbc.narrow(1, I, G * N).reshape({batch, G, N, L});                        // (B, G, N, L)
  s.C = xbc.narrow(1, I + G * N, G * N).reshape({batch, G, N, L});
  if (r.ssm) {
    s.B = s.B.detach();
    s.C = s.C.detach();
    dt = dt.detach();
  }
  s.delta = delta_of(dt);                                                         // (B, heads, L)
  // The SSD scan with a scalar A and Delta per head (head h reads group h / (heads / G) of B
  // and C), in the form ops::ssd_scan picks (chunk_size 0), on the channel-major x.
  s.A = -at::exp(A_log);                                                          // (heads)
  // Its last state (generation) is the P x N state of each head: (B, heads, P, N) = (B, I, N).
  auto [y, last] = ops::ssd_scan(s.x, s.delta, s.A, s.B, s.C, D, state != nullptr, r.ssm ? "mambalrp" : "exact");
  s.y = y;                                                                        // (B, I, L)
  if (state) state->ssm = last->reshape({batch, I, N});
  return s;
}

at::Tensor Mamba2MixerImpl::gated_out(const at::Tensor& y, const at::Tensor& z, const PropagationContext& ctx,
                                      at::Tensor* norm_rsqrt) {
  TORCH_CHECK(!norm_rsqrt || !at::GradMode::is_enabled(), "gated_out: norm_rsqrt only without grad mode");
  const rules::LayerRule out_rule = ctx.composite.rule_for("out_proj");
  // Nothing recorded: the norm channel-major, as y and z are (token-major views of them cost a
  // transposing copy and strided passes, slower the longer the sequence).
  const at::Tensor v = at::GradMode::is_enabled() ? norm->forward(y.transpose(1, 2), z.transpose(1, 2), ctx.rules)
                                                  : norm->forward_channels(y, z, norm_rsqrt).transpose(1, 2);  // (B, L, I)
  return rules::linear_with_rule(v, out_proj->weight, out_proj->opt_bias(), out_rule);  // (B, L, H)
}

bool Mamba2MixerImpl::uses_explanation_node(const PropagationContext& ctx) const {
  const rules::RuleSet& r = ctx.rules;
  auto lrp0 = [&](const char* layer) { return ctx.composite.rule_for(layer).kind == rules::LayerRule::Kind::kLrp0; };
  if (ctx.trace || !at::GradMode::is_enabled() || !(r.silu && r.ssm && r.gate && r.norm) ||
      !lrp0("in_proj") || !lrp0("conv1d") || !lrp0("out_proj"))
    return false;
  for (const at::Tensor& p : parameters())
    if (p.requires_grad()) return false;
  return true;
}

at::Tensor Mamba2MixerImpl::forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx) {
  if (uses_explanation_node(ctx)) return mamba2_mixer_explanation_node(*this, hidden, mask, ctx.recompute);
  const ScanParts s = scan_parts(hidden, mask, ctx);
  if (ctx.trace) {
    // The hidden-attention methods read the per-channel form: A and Delta of head h
    // repeated over its P channels (channel h P + p reads group (h P + p) / (I / G)).
    const MambaConfig& c = config_;
    const int64_t batch = hidden.size(0), L = hidden.size(1);
    const int64_t I = c.intermediate_size(), heads = c.num_heads(), P = c.head_dim(), N = c.state_size();
    const at::Tensor delta_ch = s.delta.detach().unsqueeze(2).expand({batch, heads, P, L}).reshape({batch, I, L});
    const at::Tensor A_ch = s.A.detach().unsqueeze(1).expand({heads, P}).reshape({I, 1}).expand({I, N});
    ctx.trace->push_back({s.x.detach(), delta_ch, A_ch.contiguous(), s.B.detach().contiguous(),
                          s.C.detach().contiguous(), s.y});
  }
  return gated_out(s.y, s.z, ctx);                                                 // (B, L, H)
}

}  // namespace mamba_lrp
