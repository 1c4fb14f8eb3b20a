// CPU kernels of the selective-scan ops (public and internal): validation, output
// allocation, then the framework-free loops of kernels/cpu. What each op computes:
// csrc/ops/ops.h.
//
// float16 / bfloat16 inputs (u, delta, z, B, C; A, D, delta_bias in float32) are computed in
// float32, as mamba_ssm does on CUDA, with outputs in the input dtype and last_state, dA, dD,
// ddelta_bias in float32. The forward and backward kernels convert row by row; the other
// internal ops take their ATen versions (csrc/ops/composite), which call these two.
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/cpu/parallel_for.h"
#include "csrc/ops/selective_scan_common.h"
#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {
namespace ops {
namespace {

bool reduced_precision(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

std::tuple<at::Tensor, OptTensor, OptTensor> selective_scan_fwd_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus, bool return_last_state) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  // The state in the weights' dtype: u's, or float32 for float16 / bfloat16 inputs.
  ScanForwardOutputs o = allocate_forward_outputs(in, return_last_state, in.A.scalar_type(), p);
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for);
  return {o.out, o.out_y, o.last_state};
}

ScanGradients selective_scan_bwd_cpu(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                                 const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                                 const OptTensor& out_y, bool delta_softplus, c10::string_view rule_name) {
  const kernels::ScanRule rule = parse_scan_rule(rule_name);
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  // The state gradient in the weights' dtype, as the forward's last state.
  const ScanBackwardTensors t = prepare_backward(in, rule, grad_out, grad_last_state, out_y, in.A.scalar_type(), p);
  kernels::cpu::selective_scan_bwd(p, aten_parallel_for);
  return t.results(B, C);
}

std::tuple<at::Tensor, at::Tensor, OptTensor, OptTensor> selective_scan_lrp_fwd_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  if (reduced_precision(in.u))  // the factors in u's dtype, from the float32 forward
    return composite::selective_scan_lrp_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  // No pre-gate y: the factors replace it.
  const at::Tensor out = allocate_forward_outputs(in, false, in.u.scalar_type(), p, /*with_out_y=*/false).out;
  LrpScanFactors f;  // laid out as out (dense (B, D, L))
  kernels::cpu::LrpFactors keep;
  keep.batch_stride = out.stride(0);
  keep.dim_stride = out.stride(1);
  f.dt = at::empty_like(out);
  keep.dt = f.dt.data_ptr();
  if (in.z) {
    f.gy_scale = at::empty_like(out);
    f.dz_scale = at::empty_like(out);
    keep.gy_scale = f.gy_scale.data_ptr();
    keep.dz_scale = f.dz_scale.data_ptr();
  }
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for, keep);
  auto opt = [](const at::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; };
  return {out, f.dt, opt(f.gy_scale), opt(f.dz_scale)};
}

at::Tensor selective_scan_fwd_over_u_cpu(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                            const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                            const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  if (reduced_precision(in.u))  // not written over u: a new output
    return composite::selective_scan_fwd_over_u(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  at::Tensor out = in.u;
  if (out.is_contiguous()) {
    // Step t of a row reads u at t before it writes out at t, and rows are disjoint.
    p.out = out.data_ptr();
    p.out_batch_stride = out.stride(0);
    p.out_dim_stride = out.stride(1);
  } else {
    out = allocate_forward_outputs(in, false, in.u.scalar_type(), p, /*with_out_y=*/false).out;
  }
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for);
  return out;
}

std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd_recompute_cpu(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
    bool overwrite_inputs, bool u_through_silu) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  if (reduced_precision(in.u))
    return composite::selective_scan_lrp_bwd_recompute(grad_out, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                                       overwrite_inputs, u_through_silu);
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  const bool overwrite = overwrite_inputs && in.u.is_contiguous() && in.delta.is_contiguous();
  const ScanBackwardTensors t =
      prepare_backward(in, kernels::ScanRule::kMambaLRP, grad_out, c10::nullopt, c10::nullopt, in.u.scalar_type(), p,
                       overwrite ? in.u : at::Tensor(), overwrite && in.z ? in.delta : at::Tensor(),
                       /*needs_out_y=*/false);
  kernels::cpu::selective_scan_bwd_lrp_recompute(p, aten_parallel_for, u_through_silu);
  return {t.du, t.dz};
}

std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& dt,
                                                             const OptTensor& gy_scale, const OptTensor& dz_scale,
                                                             const at::Tensor& A, const at::Tensor& B,
                                                             const at::Tensor& C, const OptTensor& D,
                                                             bool delta_softplus) {
  // The factors stand in for the inputs they replace, which have their shapes: dt for u and
  // delta, silu(z)/2 for z, y sigmoid(z)/2 for the pre-gate y. So the usual checks and
  // allocations (grad_out against u, du, dz) apply; the kernel reads the factors.
  TORCH_CHECK(gy_scale.has_value() == dz_scale.has_value(),
              "_selective_scan_lrp_bwd: gy_scale and dz_scale come together (both with z, neither without)");
  // One stride pair serves the three factors: as given when they share one layout with a
  // unit time stride (the forward's dense ones, or a stride-0 batch of them for a batch of
  // cotangents through one forward), dense copies otherwise.
  if (reduced_precision(dt))
    return composite::selective_scan_lrp_bwd(grad_out, dt, gy_scale, dz_scale, A, B, C, D, delta_softplus);
  const bool one_layout = dt.stride(-1) == 1 && (!gy_scale || (gy_scale->strides() == dt.strides() &&
                                                               dz_scale->strides() == dt.strides()));
  auto laid_out = [&](const at::Tensor& t) { return one_layout ? t : t.contiguous(); };
  const at::Tensor dt_dense = laid_out(dt);
  const OptTensor gy_dense = gy_scale ? OptTensor(laid_out(*gy_scale)) : c10::nullopt;
  const OptTensor dz_dense = dz_scale ? OptTensor(laid_out(*dz_scale)) : c10::nullopt;
  const ScanInputs in =
      check_scan_inputs(ScanBackend::kCPU, dt_dense, dt_dense, A, B, C, D, gy_dense, c10::nullopt, delta_softplus);
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  const ScanBackwardTensors t = prepare_backward(in, kernels::ScanRule::kMambaLRP, grad_out, c10::nullopt, c10::nullopt,
                                                 in.u.scalar_type(), p, at::Tensor(), at::Tensor(), /*needs_out_y=*/false);
  if (dz_dense) {  // y sigmoid(z) / 2 where the kernel expects the pre-gate y (read through its strides)
    TORCH_CHECK(dz_dense->sizes() == in.u.sizes() && dz_dense->scalar_type() == in.u.scalar_type(),
                "_selective_scan_lrp_bwd: dz_scale must match dt");
    p.out_y = dz_dense->data_ptr();
    p.out_y_batch_stride = dz_dense->stride(0);
    p.out_y_dim_stride = dz_dense->stride(1);
  }
  kernels::cpu::LrpFactors factors;
  factors.batch_stride = in.u.stride(0);
  factors.dim_stride = in.u.stride(1);
  factors.dt = in.u.data_ptr();
  if (in.z) {
    TORCH_INTERNAL_ASSERT(p.z_batch_stride == factors.batch_stride && p.z_dim_stride == factors.dim_stride &&
                          p.out_y_batch_stride == factors.batch_stride && p.out_y_dim_stride == factors.dim_stride);
    factors.gy_scale = in.z->data_ptr();
    factors.dz_scale = p.out_y;
  }
  kernels::cpu::selective_scan_bwd(p, aten_parallel_for, factors);
  return {t.du, t.dz};
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cpu));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cpu));
  m.impl("_selective_scan_lrp_fwd", TORCH_FN(selective_scan_lrp_fwd_cpu));
  m.impl("_selective_scan_lrp_bwd", TORCH_FN(selective_scan_lrp_bwd_cpu));
  m.impl("_selective_scan_fwd_over_u", TORCH_FN(selective_scan_fwd_over_u_cpu));
  m.impl("_selective_scan_lrp_bwd_recompute", TORCH_FN(selective_scan_lrp_bwd_recompute_cpu));
}

}  // namespace ops
}  // namespace mamba_lrp
