// CPU kernels of the selective-scan ops: validation, output allocation, then the
// framework-free loops of kernels/cpu.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "csrc/selective_scan_common.h"
#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {
namespace {

void aten_parallel_for(int64_t n, int64_t grain, void* ctx, kernels::cpu::ParallelBody body) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(ctx, begin, end); });
}

std::tuple<at::Tensor, c10::optional<at::Tensor>, c10::optional<at::Tensor>> selective_scan_fwd_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
    bool delta_softplus, bool return_last_state) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  at::Tensor out = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L)
  p.out = out.data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  c10::optional<at::Tensor> out_y, last_state;
  if (in.z) {
    out_y = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L) pre-gate y
    p.out_y = out_y->data_ptr();
    p.out_y_batch_stride = out_y->stride(0);
    p.out_y_dim_stride = out_y->stride(1);
  }
  if (return_last_state) {
    last_state = at::empty({in.batch, in.dim, in.dstate}, in.u.options());  // (B, D, N)
    p.last_state = last_state->data_ptr();
  }
  kernels::cpu::selective_scan_fwd(p, aten_parallel_for);
  return {out, out_y, last_state};
}

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor>
selective_scan_bwd_cpu(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                       const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                       const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, const OptTensor& out_y,
                       bool delta_softplus, c10::string_view rule_name) {
  const kernels::ScanRule rule = parse_scan_rule(rule_name);
  const ScanInputs in = check_scan_inputs(ScanBackend::kCPU, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  TORCH_CHECK(grad_out.sizes() == u.sizes() && grad_out.scalar_type() == u.scalar_type(),
              "selective_scan backward: grad_out must match u (shape ", shape_str(u), ", dtype ", u.scalar_type(),
              "), got ", shape_str(grad_out), " ", grad_out.scalar_type());
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  p.rule = rule;
  const at::Tensor gout = grad_out.contiguous();
  p.grad_out = gout.data_ptr();
  p.grad_out_batch_stride = gout.stride(0);
  p.grad_out_dim_stride = gout.stride(1);
  at::Tensor gls;
  if (grad_last_state && grad_last_state->defined()) {
    TORCH_CHECK(grad_last_state->sizes() == at::IntArrayRef({in.batch, in.dim, in.dstate}),
                "selective_scan backward: grad_last_state must have shape (batch, dim, dstate), got ",
                shape_str(*grad_last_state));
    gls = grad_last_state->to(u.scalar_type()).contiguous();
    p.grad_last_state = gls.data_ptr();
  }
  at::Tensor y;
  if (in.z) {
    TORCH_CHECK(out_y && out_y->sizes() == u.sizes(),
                "selective_scan backward: out_y (the pre-gate output, shape of u) is needed when z is given");
    y = out_y->contiguous();
    p.out_y = y.data_ptr();
    p.out_y_batch_stride = y.stride(0);
    p.out_y_dim_stride = y.stride(1);
  }

  at::Tensor du = at::empty_like(in.u, at::MemoryFormat::Contiguous);
  p.du = du.data_ptr();
  p.du_batch_stride = du.stride(0);
  p.du_dim_stride = du.stride(1);
  OptTensor dz, ddelta, dA, dB, dC, dD, ddelta_bias;
  if (in.z) {
    dz = at::empty_like(*in.z, at::MemoryFormat::Contiguous);
    p.dz = dz->data_ptr();
    p.dz_batch_stride = dz->stride(0);
    p.dz_dim_stride = dz->stride(1);
  }
  if (rule == kernels::ScanRule::kExact) {
    ddelta = at::empty_like(in.delta, at::MemoryFormat::Contiguous);
    p.ddelta = ddelta->data_ptr();
    p.ddelta_batch_stride = ddelta->stride(0);
    p.ddelta_dim_stride = ddelta->stride(1);
    dA = at::empty_like(in.A, at::MemoryFormat::Contiguous);
    p.dA = dA->data_ptr();
    dB = at::empty(in.B.sizes(), in.B.options());  // (B, G, N, L)
    p.dB = dB->data_ptr();
    dC = at::empty(in.C.sizes(), in.C.options());
    p.dC = dC->data_ptr();
    if (in.D) {
      dD = at::empty_like(*in.D, at::MemoryFormat::Contiguous);
      p.dD = dD->data_ptr();
    }
    if (in.delta_bias) {
      ddelta_bias = at::empty_like(*in.delta_bias, at::MemoryFormat::Contiguous);
      p.ddelta_bias = ddelta_bias->data_ptr();
    }
  }
  kernels::cpu::selective_scan_bwd(p, aten_parallel_for);
  if (dB && B.dim() == 3) {  // back to the caller's (batch, dstate, seqlen)
    dB = dB->squeeze(1);
    dC = dC->squeeze(1);
  }
  return {du, ddelta, dA, dB, dC, dD, dz, ddelta_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cpu));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cpu));
}

}  // namespace mamba_lrp
