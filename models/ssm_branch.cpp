#include "models/ssm_branch.h"

#include <torch/autograd.h>

#include "csrc/ops.h"

namespace mamba_lrp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the scan consumes, computed from the branch input x.
struct ScanOperands {
  at::Tensor conv_out;                    // (B, I, L) before the SiLU
  at::Tensor u, delta, A, B, C;           // u, delta (pre-softplus): (B, I, L); B, C: (B, N, L)
  c10::optional<at::Tensor> delta_bias;   // dt_proj's bias, added by the scan (undefined: in delta)
};

// z (B, I, L): the argument itself, or the z half of in_proj applied to it (SsmBranch::z_weight).
at::Tensor z_of(const at::Tensor& z_arg, const SsmBranch& w) {
  return w.z_weight.defined() ? linear_to_channels(z_arg, w.z_weight, w.z_bias, LayerRule()) : z_arg;
}

// (B, L) 0/1 mask -> (B, 1, L) in x's dtype, or undefined.
at::Tensor mask3(const at::Tensor& mask, const at::Tensor& x) {
  return mask.defined() ? mask.unsqueeze(1).to(x.scalar_type()) : at::Tensor();
}

ScanOperands scan_operands(const at::Tensor& x_in, const at::Tensor& m3, const SsmBranch& w,
                           const PropagationContext& ctx) {
  const Composite& comp = ctx.composite;
  const int64_t I = x_in.size(1), N = w.A_log.size(1);
  const int64_t R = w.dt_proj_weight.size(1), K = w.conv_weight.size(2);
  ScanOperands s;
  at::Tensor x = m3.defined() ? x_in * m3 : x_in;                                  // (B, I, L)
  // Causal: K-1 zeros on the left only, so the output has length L (no slicing, whose
  // backward would fill and copy a full-size gradient).
  s.conv_out = conv1d_with_rule(at::constant_pad_nd(x, {K - 1, 0}), w.conv_weight, w.conv_bias, 0, I,
                                comp.rule_for("conv1d"));                          // (B, I, L)
  s.u = ctx.rules.silu ? silu_identity(s.conv_out) : at::silu(s.conv_out);          // (B, I, L)
  if (m3.defined()) s.u = s.u * m3;
  at::Tensor params =
      linear_with_rule(s.u.transpose(1, 2), w.x_proj_weight, c10::nullopt, comp.rule_for("x_proj"));  // (B, L, R+2N)
  at::Tensor dt = params.narrow(2, 0, R);                                          // (B, L, R)
  s.B = params.narrow(2, R, N).transpose(1, 2);                                    // (B, N, L)
  s.C = params.narrow(2, R + N, N).transpose(1, 2);                                // (B, N, L)
  // Under LRP-0 the scan adds dt_proj's bias before its softplus: one pass less over delta.
  const LayerRule dt_rule = comp.rule_for("dt_proj");
  const bool bias_in_scan = dt_rule.kind == LayerRule::Kind::kLrp0;
  s.delta = linear_to_channels(dt, w.dt_proj_weight, bias_in_scan ? c10::nullopt : w.dt_proj_bias, dt_rule);
  if (bias_in_scan) s.delta_bias = w.dt_proj_bias;
  s.A = -at::exp(w.A_log);                                                         // (I, N)
  return s;
}

// The branch under every MambaLRP rule as one autograd node. Its backward is what the
// composition of rule ops computes (the scan's MambaLRP backward with the gate half rule,
// the mask, the SiLU identity rule, the plain conv1d gradient), but it keeps only x and
// z_arg (z, or in_proj's input with SsmBranch::z_weight) and recomputes the scan operands,
// z and the pre-gate output y from them.
class LeanMambaLrpBranch : public torch::autograd::Function<LeanMambaLrpBranch> {
 public:
  // mask: optional, as autograd Functions do not take undefined tensors.
  // z_arg: z, or in_proj's input when w.z_weight is set (z_of).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& z_arg,
                            const c10::optional<at::Tensor>& mask, const SsmBranch& w) {
    ctx->save_for_backward({x, z_arg, mask ? *mask : at::Tensor()});
    ctx->saved_data["z_weight"] = w.z_weight;
    ctx->saved_data["z_bias"] = w.z_bias;
    ctx->saved_data["conv_weight"] = w.conv_weight;
    ctx->saved_data["conv_bias"] = w.conv_bias;
    ctx->saved_data["x_proj_weight"] = w.x_proj_weight;
    ctx->saved_data["dt_proj_weight"] = w.dt_proj_weight;
    ctx->saved_data["dt_proj_bias"] = w.dt_proj_bias;
    ctx->saved_data["A_log"] = w.A_log;
    ctx->saved_data["D"] = w.D;
    const ScanOperands s = scan_operands(x, mask3(mask ? *mask : at::Tensor(), x), w, PropagationContext{});
    return std::get<0>(
        selective_scan_forward_parts(s.u, s.delta, s.A, s.B, s.C, w.D, z_of(z_arg, w), s.delta_bias, true, false));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &z_arg = saved[1], &mask = saved[2];
    const at::Tensor z_weight = ctx->saved_data["z_weight"].toTensor();
    const SsmBranch w{ctx->saved_data["conv_weight"].toTensor(),
                      ctx->saved_data["conv_bias"].toOptional<at::Tensor>(),
                      ctx->saved_data["x_proj_weight"].toTensor(),
                      ctx->saved_data["dt_proj_weight"].toTensor(),
                      ctx->saved_data["dt_proj_bias"].toOptional<at::Tensor>(),
                      ctx->saved_data["A_log"].toTensor(),
                      ctx->saved_data["D"].toTensor(),
                      z_weight,
                      ctx->saved_data["z_bias"].toOptional<at::Tensor>()};
    const at::Tensor z = z_of(z_arg, w);
    const int64_t I = x.size(1), K = w.conv_weight.size(2);
    const at::Tensor m3 = mask3(mask, x);
    const ScanOperands s = scan_operands(x, m3, w, PropagationContext{});
    const at::Tensor y = std::get<0>(
        selective_scan_forward_parts(s.u, s.delta, s.A, s.B, s.C, w.D, c10::nullopt, s.delta_bias, true, false));
    const at::Tensor grad_out = grads[0].defined() ? grads[0] : at::zeros_like(y);
    auto parts = selective_scan_backward_parts(grad_out, c10::nullopt, s.u, s.delta, s.A, s.B, s.C, w.D, z,
                                               s.delta_bias, y, true, "mambalrp");
    at::Tensor du = std::get<0>(parts);                                            // (B, I, L)
    const at::Tensor dz = *std::get<6>(parts);                                     // (B, I, L)
    if (m3.defined()) du = du * m3;
    const at::Tensor dconv = du * at::sigmoid(s.conv_out);                         // SiLU identity rule
    // The causal conv's input gradient: dx[s] = sum_k w[k] dconv[s + K-1-k], a conv of the
    // right-padded gradient with the flipped kernel.
    at::Tensor dx = at::conv1d(at::constant_pad_nd(dconv, {0, K - 1}), w.conv_weight.flip({2}), at::Tensor(),
                               /*stride=*/{1}, /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, I);
    if (m3.defined()) dx = dx * m3;
    // Through the z half of in_proj when the node computed z: (W_z^T dz)^T, (B, L, H).
    const at::Tensor dz_arg = z_weight.defined() ? at::matmul(z_weight.t(), dz).transpose(1, 2) : dz;
    return {dx, dz_arg, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool uses_lean_mambalrp_branch(const PropagationContext& ctx) {
  const RuleSet& r = ctx.rules;
  return ctx.recompute && r.silu && r.ssm && r.gate && ctx.composite.rule_for("conv1d").kind == LayerRule::Kind::kLrp0;
}

at::Tensor ssm_branch_forward(const at::Tensor& x, const at::Tensor& z_arg, const at::Tensor& mask,
                              const SsmBranch& w, const PropagationContext& ctx) {
  if (uses_lean_mambalrp_branch(ctx))
    return LeanMambaLrpBranch::apply(x, z_arg, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt, w);
  const at::Tensor z = z_of(z_arg, w);
  const RuleSet& r = ctx.rules;
  const char* rule = r.ssm ? "mambalrp" : "exact";
  const ScanOperands s = scan_operands(x, mask3(mask, x), w, ctx);
  // The scan's own MambaLRP rule covers the SSM, the gate half rule and the gate's SiLU
  // identity together; when the ablations switch those independently, or the scan is
  // traced (its pre-gate output recorded), the gate runs outside the scan.
  const bool fuse_gate = !ctx.trace && (r.ssm == r.gate) && (r.gate == r.silu);
  if (fuse_gate) return std::get<0>(selective_scan(s.u, s.delta, s.A, s.B, s.C, w.D, z, s.delta_bias, true, false, rule));
  at::Tensor y;  // (B, I, L)
  if (ctx.trace) {
    // softplus(delta) explicit, so that the delta the scan used can be recorded.
    const at::Tensor delta = at::softplus(s.delta_bias ? s.delta + s.delta_bias->unsqueeze(-1) : s.delta);
    y = std::get<0>(selective_scan(s.u, delta, s.A, s.B, s.C, w.D, c10::nullopt, c10::nullopt, false, false, rule));
    ctx.trace->push_back({s.u.detach(), delta.detach(), s.A.detach(), s.B.detach().contiguous(),
                          s.C.detach().contiguous(), y});
  } else {
    y = std::get<0>(selective_scan(s.u, s.delta, s.A, s.B, s.C, w.D, c10::nullopt, s.delta_bias, true, false, rule));
  }
  at::Tensor gate = r.silu ? silu_identity(z) : at::silu(z);                        // (B, I, L)
  return r.gate ? gate_half(y, gate) : y * gate;
}

}  // namespace mamba_lrp
