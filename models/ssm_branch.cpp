#include "models/ssm_branch.h"

#include <torch/autograd.h>

#include "csrc/ops/ops.h"
#include "models/channel_layout.h"

namespace mamba_lrp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the scan consumes, computed from the branch input x.
struct ScanOperands {
  at::Tensor u, delta, A, B, C;           // u, delta (pre-softplus): (B, I, L); B, C: (B, N, L)
  at::Tensor dt_low;                      // (B, R, L) x_proj's dt rows, dt_proj's input
  c10::optional<at::Tensor> delta_bias;   // dt_proj's bias, added by the scan (undefined: in delta)
};

// (B, L) 0/1 mask -> (B, 1, L) in x's dtype, or undefined.
at::Tensor mask3(const at::Tensor& mask, const at::Tensor& x) {
  return mask.defined() ? mask.unsqueeze(1).to(x.scalar_type()) : at::Tensor();
}

// silu(causal conv1d(x)) as one node, for frozen weights under LRP-0 on the conv: the
// conv's input gradient (kernels/cpu/causal_conv1d) of the SiLU's gradient, which is the
// identity rule's sigmoid(c) (silu_rule) or the derivative sigmoid(c) (1 + c (1 - sigmoid(c))).
// Keeps one (B, I, L) tensor: sigmoid(c) under the rule (computed once, in the forward), else c.
class ConvSilu : public torch::autograd::Function<ConvSilu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, bool silu_rule) {
    const ops::ConvSiluParts parts =
        ops::_causal_conv1d_silu(x, weight, bias, ops::kSilu | (silu_rule ? ops::kSigmoid : ops::kConv));
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["silu_rule"] = silu_rule;
    ctx->save_for_backward({silu_rule ? parts.sigmoid : parts.conv});
    return parts.silu;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor saved = ctx->get_saved_variables()[0];
    at::Tensor scale = saved;  // sigmoid(c)
    if (!ctx->saved_data["silu_rule"].toBool()) {
      const at::Tensor sig = at::sigmoid(saved);
      scale = sig * (1 + saved * (1 - sig));
    }
    const at::Tensor grad_u = grads[0].defined() ? grads[0] : at::zeros_like(saved);
    return {ops::_causal_conv1d_input_grad(grad_u, scale, ctx->saved_data["weight"].toTensor()), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

bool requires_grad(const c10::optional<at::Tensor>& t) { return t && t->requires_grad(); }

// s.delta from s.dt_low through dt_proj. Under LRP-0 the scan adds dt_proj's bias before its
// softplus: one pass less over delta.
void set_delta(ScanOperands& s, const SsmBranch& w, const rules::Composite& comp) {
  const rules::LayerRule dt_rule = comp.rule_for("dt_proj");
  const bool bias_in_scan = dt_rule.kind == rules::LayerRule::Kind::kLrp0;
  s.delta = linear_on_channels(s.dt_low, w.dt_proj_weight, bias_in_scan ? c10::nullopt : w.dt_proj_bias, dt_rule);
  s.delta_bias = bias_in_scan ? w.dt_proj_bias : c10::nullopt;
}

// u = silu(conv1d(x)) (masked), recorded by rule.
void set_conv_silu(ScanOperands& s, const at::Tensor& x_in, const at::Tensor& m3, const SsmBranch& w,
                   const PropagationContext& ctx) {
  const int64_t I = x_in.size(1), K = w.conv_weight.size(2);
  const at::Tensor x = m3.defined() ? x_in * m3 : x_in;                            // (B, I, L)
  const rules::LayerRule conv_rule = ctx.composite.rule_for("conv1d");
  if (!at::GradMode::is_enabled()) {  // nothing recorded: the plain layers
    s.u = ops::_causal_conv1d_silu(x, w.conv_weight, w.conv_bias, ops::kSilu).silu;  // (B, I, L)
  } else if (conv_rule.kind == rules::LayerRule::Kind::kLrp0 && !w.conv_weight.requires_grad() &&
             !requires_grad(w.conv_bias)) {
    s.u = ConvSilu::apply(x, w.conv_weight, w.conv_bias, ctx.rules.silu);
  } else {
    // Causal: K-1 zeros on the left only, so the output has length L (no slicing, whose
    // backward would fill and copy a full-size gradient).
    const at::Tensor conv = rules::conv1d_with_rule(at::constant_pad_nd(x, {K - 1, 0}), w.conv_weight, w.conv_bias, 0, I,
                                             conv_rule);                           // (B, I, L)
    s.u = ctx.rules.silu ? ops::silu_identity(conv) : at::silu(conv);              // (B, I, L)
  }
  if (m3.defined()) s.u = s.u * m3;
}

ScanOperands scan_operands(const at::Tensor& x_in, const at::Tensor& m3, const SsmBranch& w,
                           const PropagationContext& ctx) {
  const rules::Composite& comp = ctx.composite;
  const int64_t N = w.A_log.size(1), R = w.dt_proj_weight.size(1);
  ScanOperands s;
  set_conv_silu(s, x_in, m3, w, ctx);
  // The SSM rule holds delta, B and C constant: no gradient ever reaches x_proj or dt_proj,
  // so they are not recorded at all (no graph nodes, nothing saved for a backward).
  const at::Tensor proj_in = ctx.rules.ssm ? s.u.detach() : s.u;
  const at::Tensor params = linear_on_channels(proj_in, w.x_proj_weight, c10::nullopt, comp.rule_for("x_proj"));  // (B, R+2N, L)
  s.dt_low = params.narrow(1, 0, R);                                               // (B, R, L)
  s.B = params.narrow(1, R, N);                                                    // (B, N, L)
  s.C = params.narrow(1, R + N, N);                                                // (B, N, L)
  set_delta(s, w, comp);
  s.A = -at::exp(w.A_log);                                                         // (I, N)
  return s;
}

// The branch under every MambaLRP rule as one autograd node. Its backward is what the
// composition of rule ops computes (the scan's MambaLRP backward with the gate half rule,
// the mask, the SiLU identity rule, the plain conv1d gradient), but of the (B, I, L) tensors
// it keeps only x and z, with x_proj's small output (dt rows, B, C: (B, R + 2N, L)), and
// recomputes the conv, dt_proj and the scan's forward (for the gate's factors) there.
class RecomputeBranch : public torch::autograd::Function<RecomputeBranch> {
 public:
  // mask: optional, as autograd Functions do not take undefined tensors.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& z,
                            const c10::optional<at::Tensor>& mask, const SsmBranch& w) {
    const ScanOperands s = scan_operands(x, mask3(mask ? *mask : at::Tensor(), x), w, PropagationContext{});
    ctx->save_for_backward({x, z, mask ? *mask : at::Tensor(), s.dt_low, s.B, s.C});
    ctx->saved_data["conv_weight"] = w.conv_weight;
    ctx->saved_data["conv_bias"] = w.conv_bias;
    ctx->saved_data["dt_proj_weight"] = w.dt_proj_weight;
    ctx->saved_data["dt_proj_bias"] = w.dt_proj_bias;
    ctx->saved_data["A"] = s.A;
    ctx->saved_data["D"] = w.D;
    // u is not kept: the output may go over it.
    return ops::_selective_scan_fwd_over_u(s.u, s.delta, s.A, s.B, s.C, w.D, z, s.delta_bias, true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &z = saved[1], &mask = saved[2];
    SsmBranch w;
    w.conv_weight = ctx->saved_data["conv_weight"].toTensor();
    w.conv_bias = ctx->saved_data["conv_bias"].toOptional<at::Tensor>();
    w.dt_proj_weight = ctx->saved_data["dt_proj_weight"].toTensor();
    w.dt_proj_bias = ctx->saved_data["dt_proj_bias"].toOptional<at::Tensor>();
    w.D = ctx->saved_data["D"].toTensor();
    at::NoGradGuard plain_layers;  // recomputed without recording, also under create_graph
    const at::Tensor m3 = mask3(mask, x);
    ScanOperands s;
    s.dt_low = saved[3];
    s.B = saved[4];
    s.C = saved[5];
    s.A = ctx->saved_data["A"].toTensor();
    set_delta(s, w, rules::Composite());
    const at::Tensor g = grads[0].defined() ? grads[0] : at::zeros_like(x);
    const at::Tensor xm = m3.defined() ? x * m3 : x;
    // From the conv output c: silu(c), the scan's forward again and its MambaLRP backward,
    // the gradient at c under the SiLU identity rule (the CPU kernel writes it over c and dz
    // over delta, both made here for this call). Masked steps: c = 0 there gives
    // u = silu(0) = 0, as the mask after the SiLU does, and their gradients are masked.
    at::Tensor c = ops::_causal_conv1d_silu(xm, w.conv_weight, w.conv_bias, ops::kConv).conv;  // (B, I, L)
    if (m3.defined()) c.mul_(m3);
    auto [dc, dz] = ops::_selective_scan_lrp_bwd_recompute(g, c, s.delta, s.A, s.B, s.C, w.D, z, s.delta_bias, true,
                                                           /*overwrite_inputs=*/true, /*u_through_silu=*/true);
    s.delta = at::Tensor();
    if (m3.defined()) dc.mul_(m3);
    at::Tensor dx = ops::_causal_conv1d_input_grad(dc, c10::nullopt, w.conv_weight, /*overwrite_grad_out=*/true);
    if (m3.defined()) dx.mul_(m3);
    return {dx, *dz, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool uses_recompute_branch(const PropagationContext& ctx) {
  const rules::RuleSet& r = ctx.rules;
  return ctx.recompute && r.silu && r.ssm && r.gate && ctx.composite.rule_for("conv1d").kind == rules::LayerRule::Kind::kLrp0;
}

at::Tensor ssm_branch_forward(const at::Tensor& x, const at::Tensor& z, const at::Tensor& mask,
                              const SsmBranch& w, const PropagationContext& ctx) {
  if (uses_recompute_branch(ctx))
    return RecomputeBranch::apply(x, z, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt, w);
  const rules::RuleSet& r = ctx.rules;
  const char* rule = r.ssm ? "mambalrp" : "exact";
  const ScanOperands s = scan_operands(x, mask3(mask, x), w, ctx);
  // The scan's own MambaLRP rule covers the SSM, the gate half rule and the gate's SiLU
  // identity together; when the ablations switch those independently, or the scan is
  // traced (its pre-gate output recorded), the gate runs outside the scan.
  const bool fuse_gate = !ctx.trace && (r.ssm == r.gate) && (r.gate == r.silu);
  if (fuse_gate) return std::get<0>(ops::selective_scan(s.u, s.delta, s.A, s.B, s.C, w.D, z, s.delta_bias, true, false, rule));
  at::Tensor y;  // (B, I, L)
  if (ctx.trace) {
    // softplus(delta) explicit, so that the delta the scan used can be recorded.
    const at::Tensor delta = at::softplus(s.delta_bias ? s.delta + s.delta_bias->unsqueeze(-1) : s.delta);
    y = std::get<0>(ops::selective_scan(s.u, delta, s.A, s.B, s.C, w.D, c10::nullopt, c10::nullopt, false, false, rule));
    ctx.trace->push_back({s.u.detach(), delta.detach(), s.A.detach(), s.B.detach().contiguous(),
                          s.C.detach().contiguous(), y});
  } else {
    y = std::get<0>(ops::selective_scan(s.u, s.delta, s.A, s.B, s.C, w.D, c10::nullopt, s.delta_bias, true, false, rule));
  }
  at::Tensor gate = r.silu ? ops::silu_identity(z) : at::silu(z);                   // (B, I, L)
  return r.gate ? ops::gate_half(y, gate) : y * gate;
}

at::Tensor ssm_branch_prefill(const at::Tensor& x, const at::Tensor& z, const at::Tensor& mask, const SsmBranch& w,
                              SsmState& state) {
  at::NoGradGuard plain_layers;
  const int64_t K = w.conv_weight.size(2), L = x.size(2);
  const at::Tensor m3 = mask3(mask, x);
  const ScanOperands s = scan_operands(x, m3, w, PropagationContext{});
  // The conv reads the masked x: its last K-1 steps, zeros in front when L < K-1.
  const at::Tensor xm = m3.defined() ? x * m3 : x;                                 // (B, I, L)
  state.conv_window = at::constant_pad_nd(xm, {K - 1, 0}).narrow(2, L, K - 1).contiguous();  // (B, I, K-1)
  auto [y, last] = ops::selective_scan(s.u, s.delta, s.A, s.B, s.C, w.D, z, s.delta_bias, true, true);
  state.ssm = *last;                                                               // (B, I, N)
  return y;                                                                        // (B, I, L)
}

at::Tensor ssm_branch_step(const at::Tensor& x, const at::Tensor& z, const SsmBranch& w, SsmState& state) {
  at::NoGradGuard plain_layers;
  const int64_t N = w.A_log.size(1), R = w.dt_proj_weight.size(1);
  const at::Tensor window = at::cat({state.conv_window, x.unsqueeze(-1)}, -1);    // (B, I, K)
  at::Tensor conv = (window * w.conv_weight.squeeze(1)).sum(-1);                  // (B, I)
  if (w.conv_bias) conv = conv + *w.conv_bias;
  const at::Tensor u = at::silu(conv);                                            // (B, I)
  const rules::LayerRule plain;  // the plain layer; one row (batch 1) as a matrix-vector product
  const at::Tensor params = rules::linear_with_rule(u, w.x_proj_weight, c10::nullopt, plain);  // (B, R + 2N)
  const at::Tensor B = params.narrow(1, R, N), C = params.narrow(1, R + N, N);    // (B, N)
  const at::Tensor d = rules::linear_with_rule(params.narrow(1, 0, R), w.dt_proj_weight, w.dt_proj_bias, plain);  // (B, I)
  const at::Tensor dt = at::relu(d) + at::log1p(at::exp(-d.abs()));               // softplus (B, I)
  const at::Tensor A = -at::exp(w.A_log);                                         // (I, N)
  // h = exp(dt A) h + dt B u ; y = C . h + D u
  state.ssm = at::exp(dt.unsqueeze(-1) * A) * state.ssm + (dt * u).unsqueeze(-1) * B.unsqueeze(1);  // (B, I, N)
  const at::Tensor y = (state.ssm * C.unsqueeze(1)).sum(-1) + w.D * u;             // (B, I)
  state.conv_window = window.narrow(2, 1, window.size(2) - 1).contiguous();        // (B, I, K-1)
  return y * at::silu(z);                                                          // (B, I)
}

}  // namespace mamba_lrp
