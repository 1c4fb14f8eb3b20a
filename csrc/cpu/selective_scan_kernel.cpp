// CPU kernels of the selective-scan ops: validation, output allocation, then the
// framework-free loops of kernels/cpu.
#include <torch/library.h>

#include "csrc/cpu/parallel_for.h"
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

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cpu));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cpu));
}

}  // namespace mamba_lrp
