// selective_scan above the backends: the autograd kernel (which backward runs depends on
// `rule`) and the plain kernel used below autograd / in inference mode.
#include <torch/autograd.h>
#include <torch/library.h>

#include "csrc/ops/ops.h"
#include "csrc/ops/selective_scan_common.h"

namespace mamba_lrp {
namespace ops {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

OptTensor opt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; }
at::Tensor value_or_undefined(const OptTensor& t) { return t ? *t : at::Tensor(); }

// The MambaLRP backward runs from factors its forward kept (_selective_scan_lrp_fwd), in u's
// dtype: for float32/float64 inputs. float16/bfloat16 (CPU and CUDA) keep the scan's inputs,
// which the backward reads in float32.
bool keeps_lrp_factors(const std::string& rule, const at::Tensor& u, bool return_last_state) {
  return parse_scan_rule(rule) == kernels::ScanRule::kMambaLRP && !return_last_state &&
         (u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble);
}

class SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& delta,
                               const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                               const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
                               bool return_last_state, const std::string& rule) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["delta_softplus"] = delta_softplus;
    ctx->saved_data["rule"] = rule;
    if (keeps_lrp_factors(rule, u, return_last_state)) {
      auto [out, f] = _selective_scan_lrp_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
      ctx->save_for_backward({f.dt, A, B, C, value_or_undefined(D), f.gy_scale, f.dz_scale});
      ctx->saved_data["lrp_factors"] = true;
      return {out};
    }
    auto [out, out_y, last_state] =
        _selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state);
    // The MambaLRP backward (y linear in u) never reads u: keep only its shape, as a
    // broadcast row (stride 0 over batch and dim), not a (B, D, L) tensor.
    const at::Tensor u_saved = parse_scan_rule(rule) == kernels::ScanRule::kMambaLRP && u.dim() == 3
                                   ? at::zeros({u.size(2)}, u.options()).expand(u.sizes())
                                   : u;
    ctx->save_for_backward({u_saved, delta, A, B, C, value_or_undefined(D), value_or_undefined(z),
                            value_or_undefined(delta_bias), value_or_undefined(out_y)});
    // Undefined outputs are not allowed: return the last state only when asked for.
    if (last_state) return {out, *last_state};
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (ctx->saved_data.count("lrp_factors")) {
      const LrpScanFactors f{saved[0], saved[5], saved[6]};
      const at::Tensor grad_out = grads[0].defined() ? grads[0] : at::zeros_like(f.dt);
      auto [du, dz] = _selective_scan_lrp_bwd(grad_out, f, saved[1], saved[2], saved[3], opt(saved[4]),
                                              ctx->saved_data["delta_softplus"].toBool());
      return {du, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), value_or_undefined(dz),
              at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const at::Tensor &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3], &C = saved[4];
    const bool delta_softplus = ctx->saved_data["delta_softplus"].toBool();
    const std::string rule = ctx->saved_data["rule"].toStringRef();
    at::Tensor grad_out = grads[0].defined() ? grads[0] : at::zeros_like(u);
    const OptTensor grad_last_state = grads.size() > 1 ? opt(grads[1]) : c10::nullopt;
    auto [du, ddelta, dA, dB, dC, dD, dz, ddelta_bias] =
        _selective_scan_bwd(grad_out, grad_last_state, u, delta, A, B, C, opt(saved[5]), opt(saved[6]), opt(saved[7]),
                            opt(saved[8]), delta_softplus, rule);
    return {du,
            value_or_undefined(ddelta),
            value_or_undefined(dA),
            value_or_undefined(dB),
            value_or_undefined(dC),
            value_or_undefined(dD),
            value_or_undefined(dz),
            value_or_undefined(ddelta_bias),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, OptTensor> selective_scan_autograd(const at::Tensor& u, const at::Tensor& delta,
                                                          const at::Tensor& A, const at::Tensor& B,
                                                          const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                                          const OptTensor& delta_bias, bool delta_softplus,
                                                          bool return_last_state, c10::string_view rule) {
  parse_scan_rule(rule);  // refuse an unknown rule before any work
  // Constant B / C made time-varying here, above the Function: autograd sums their
  // gradients back to (dim, dstate) (and takes promoted inputs' back to their dtype).
  const ScanKernelForms k = scan_inputs_for_kernels(u, delta, A, B, C, z);
  auto outs = SelectiveScanFunction::apply(k.u, k.delta, A, k.B, k.C, D, k.z, delta_bias, delta_softplus,
                                           return_last_state, std::string(rule));
  const at::Tensor out = outs[0].scalar_type() == k.out_dtype ? outs[0] : outs[0].to(k.out_dtype);
  return {out, outs.size() > 1 ? opt(outs[1]) : c10::nullopt};
}

// Below autograd (inference mode, or inside another kernel): the forward alone.
std::tuple<at::Tensor, OptTensor> selective_scan_plain(const at::Tensor& u, const at::Tensor& delta,
                                                       const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                                       const OptTensor& D, const OptTensor& z,
                                                       const OptTensor& delta_bias, bool delta_softplus,
                                                       bool return_last_state, c10::string_view rule) {
  parse_scan_rule(rule);
  const ScanKernelForms k = scan_inputs_for_kernels(u, delta, A, B, C, z);
  auto [out, out_y, last_state] =
      _selective_scan_fwd(k.u, k.delta, A, k.B, k.C, D, k.z, delta_bias, delta_softplus, return_last_state);
  return {out.scalar_type() == k.out_dtype ? out : out.to(k.out_dtype), last_state};
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, Autograd, m) {
  m.impl("selective_scan", TORCH_FN(selective_scan_autograd));
}

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("selective_scan", TORCH_FN(selective_scan_plain));
}

}  // namespace ops
}  // namespace mamba_lrp
