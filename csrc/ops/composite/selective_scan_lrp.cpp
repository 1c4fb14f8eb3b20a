// The MambaLRP scan's internal ops in ATen, from the scan's own forward and backward ops:
// for devices without a kernel of their own for them (CUDA among them).
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace ops {
namespace composite {

namespace {
// dt = softplus(delta + delta_bias) (or without softplus), in u's dtype: what the scan used.
at::Tensor scan_dt(const at::Tensor& u, const at::Tensor& delta, const OptTensor& delta_bias, bool delta_softplus) {
  at::Tensor dt = delta_bias ? delta + delta_bias->unsqueeze(-1) : delta;  // (B, D, L)
  if (delta_softplus) dt = at::softplus(dt);
  return dt.to(u.scalar_type());
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, OptTensor, OptTensor> selective_scan_lrp_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus) {
  auto [out, out_y, last_state] = _selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, false);
  const at::Tensor dt = scan_dt(u, delta, delta_bias, delta_softplus);
  if (!z) return {out, dt, c10::nullopt, c10::nullopt};
  const at::Tensor sig = at::sigmoid(*z);                                          // (B, D, L)
  return {out, dt, *z * sig * 0.5, *out_y * sig * 0.5};  // silu(z)/2, y sigmoid(z)/2
}

std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd(const at::Tensor& grad_out, const at::Tensor& dt,
                                                         const OptTensor& gy_scale, const OptTensor& dz_scale,
                                                         const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                                         const OptTensor& D, bool delta_softplus) {
  TORCH_CHECK(gy_scale.has_value() == dz_scale.has_value(),
              "_selective_scan_lrp_bwd: gy_scale and dz_scale come together (both with z, neither without)");
  // The gate's half rule applied here; the scan's MambaLRP backward (y linear in u) with dt
  // as its delta reads neither u nor z: dt stands in for u's shape.
  const at::Tensor gy = gy_scale ? grad_out * *gy_scale : grad_out;                // (B, D, L)
  const at::Tensor du = std::get<0>(_selective_scan_bwd(gy, c10::nullopt, dt, dt, A, B, C, D, c10::nullopt,
                                                        c10::nullopt, c10::nullopt, false, "mambalrp"));
  if (!dz_scale) return {du, c10::nullopt};
  return {du, grad_out * *dz_scale};
}

at::Tensor selective_scan_fwd_over_u(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                     const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                     const OptTensor& delta_bias, bool delta_softplus) {
  return std::get<0>(_selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, false));
}

std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd_recompute(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
    bool overwrite_inputs, bool u_through_silu) {
  // overwrite_inputs allows, never requires, writing over u and delta: nothing is written here.
  const at::Tensor scan_u = u_through_silu ? at::silu(u) : u;                      // (B, D, L)
  OptTensor out_y;
  if (z) out_y = std::get<1>(_selective_scan_fwd(scan_u, delta, A, B, C, D, z, delta_bias, delta_softplus, false));
  auto grads = _selective_scan_bwd(grad_out, c10::nullopt, scan_u, delta, A, B, C, D, z, delta_bias, out_y,
                                   delta_softplus, "mambalrp");
  at::Tensor du = std::get<0>(grads);
  if (u_through_silu) du = du * at::sigmoid(u);  // the SiLU identity rule at c
  return {du, std::get<6>(grads)};
}

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("_selective_scan_lrp_fwd", TORCH_FN(selective_scan_lrp_fwd));
  m.impl("_selective_scan_lrp_bwd", TORCH_FN(selective_scan_lrp_bwd));
  m.impl("_selective_scan_fwd_over_u", TORCH_FN(selective_scan_fwd_over_u));
  m.impl("_selective_scan_lrp_bwd_recompute", TORCH_FN(selective_scan_lrp_bwd_recompute));
}

}  // namespace composite
}  // namespace ops
}  // namespace mamba_lrp
