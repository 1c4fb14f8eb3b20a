// CPU kernels of the selective-scan ops: validation, output allocation, then the
// framework-free loops of kernels/cpu.
#include <torch/library.h>

#include "csrc/cpu/parallel_for.h"
#include "csrc/cpu/selective_scan_lrp.h"
#include "csrc/errors.h"
#include "csrc/selective_scan_common.h"
#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {
namespace {

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, OptTensor, OptTensor> selective_scan_fwd_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus, bool return_last_state) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  ScanForwardOutputs o = allocate_forward_outputs(in, return_last_state, in.u.scalar_type(), p);
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for);
  return {o.out, o.out_y, o.last_state};
}

ScanGrads selective_scan_bwd_cpu(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                                 const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
                                 const OptTensor& out_y, bool delta_softplus, c10::string_view rule_name) {
  const kernels::ScanRule rule = parse_scan_rule(rule_name);
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  const ScanBackwardTensors t = prepare_backward(in, rule, grad_out, grad_last_state, out_y, in.u.scalar_type(), p);
  kernels::cpu::selective_scan_bwd(p, aten_parallel_for);
  return t.results(B.dim());
}

// A (batch, dim, seqlen) tensor like `like`, wired into p's lrp_* layout.
at::Tensor lrp_tensor(const at::Tensor& like, kernels::SelectiveScanParams& p) {
  at::Tensor t = at::empty({like.size(0), like.size(1), like.size(2)}, like.options());
  p.lrp_batch_stride = t.stride(0);
  p.lrp_dim_stride = t.stride(1);
  return t;
}

}  // namespace

std::pair<at::Tensor, LrpScanFactors> selective_scan_lrp_forward_cpu(const at::Tensor& u, const at::Tensor& delta,
                                                                     const at::Tensor& A, const at::Tensor& B,
                                                                     const at::Tensor& C, const OptTensor& D,
                                                                     const OptTensor& z, const OptTensor& delta_bias,
                                                                     bool delta_softplus) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  const at::Tensor out = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L)
  p.out = out.data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  LrpScanFactors f;
  f.dt = lrp_tensor(out, p);
  p.lrp_dt = f.dt.data_ptr();
  if (in.z) {
    f.gy_scale = lrp_tensor(out, p);
    f.dz_scale = lrp_tensor(out, p);
    p.lrp_gy_scale = f.gy_scale.data_ptr();
    p.lrp_dz_scale = f.dz_scale.data_ptr();
  }
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for);
  return {out, f};
}

std::pair<at::Tensor, OptTensor> selective_scan_lrp_backward_cpu(const at::Tensor& grad_out, const LrpScanFactors& f,
                                                                 const at::Tensor& A, const at::Tensor& B,
                                                                 const at::Tensor& C, const OptTensor& D,
                                                                 bool delta_softplus) {
  // dt stands in for u and delta: it has their shape, and the kernel reads neither.
  const ScanInputs in =
      check_scan_inputs(ScanBackend::kCPU, f.dt, f.dt, A, B, C, D, c10::nullopt, c10::nullopt, delta_softplus);
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  p.rule = kernels::ScanRule::kMambaLRP;
  TORCH_CHECK(grad_out.sizes() == f.dt.sizes() && grad_out.scalar_type() == f.dt.scalar_type() &&
                  grad_out.device() == f.dt.device(),
              "selective_scan backward: grad_out must match u (shape ", shape_str(f.dt), ", dtype ",
              f.dt.scalar_type(), ", ", f.dt.device(), "), got ", shape_str(grad_out), " ", grad_out.scalar_type(),
              ", ", grad_out.device());
  const at::Tensor g = grad_out.contiguous();
  p.grad_out = g.data_ptr();
  p.grad_out_batch_stride = g.stride(0);
  p.grad_out_dim_stride = g.stride(1);
  p.lrp_batch_stride = f.dt.stride(0);
  p.lrp_dim_stride = f.dt.stride(1);
  p.lrp_dt = f.dt.data_ptr();
  const at::Tensor du = at::empty_like(f.dt);
  p.du = du.data_ptr();
  p.du_batch_stride = du.stride(0);
  p.du_dim_stride = du.stride(1);
  OptTensor dz;
  if (f.gy_scale.defined()) {
    p.lrp_gy_scale = f.gy_scale.data_ptr();
    p.lrp_dz_scale = f.dz_scale.data_ptr();
    dz = at::empty_like(f.dt);
    p.dz = dz->data_ptr();
    p.dz_batch_stride = dz->stride(0);
    p.dz_dim_stride = dz->stride(1);
  }
  kernels::cpu::selective_scan_bwd(p, aten_parallel_for);
  return {du, dz};
}

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cpu));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cpu));
}

}  // namespace mamba_lrp
