// CUDA kernels of the selective-scan ops: validation (shared with the CPU backend),
// device guard, output allocation, then the framework-free launchers of kernels/cuda on
// the current stream. Built only against a CUDA Torch.
//
// Dtypes: u, delta, z, B, C float32, float16 or bfloat16 (one of them); A, D, delta_bias
// float32. Outputs out, out_y, du, dz, ddelta, dB, dC have the input dtype; dA, dD,
// ddelta_bias float32 like their weights. last_state is float32 for every input dtype
// (the kernels keep the state in float32; see kernels/cuda/selective_scan_cuda.h) — for
// float32 inputs that is u's dtype, as on the CPU.
#include <stdexcept>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/selective_scan_common.h"
#include "kernels/cuda/selective_scan_cuda.h"

namespace mamba_lrp {
namespace ops {
namespace {

// Inputs must be CUDA tensors on one device (check_scan_inputs has checked "one device").
void check_cuda(const ScanInputs& in) {
  TORCH_CHECK(in.u.is_cuda(), "selective_scan (CUDA kernel): u must be a CUDA tensor, got one on ", in.u.device());
  TORCH_CHECK(in.u.device().has_index(), "selective_scan (CUDA kernel): u's device has no index");
}

// Launcher errors: unsupported parameters (std::invalid_argument) become torch errors;
// a CUDA error is reported with its name, then any sticky launch error.
template <typename Fn>
void launch(const char* what, Fn fn) {
  cudaError_t err = cudaSuccess;
  try {
    err = fn();
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK(false, e.what());
  }
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, OptTensor, OptTensor> selective_scan_fwd_cuda(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus, bool return_last_state) {
  const ScanInputs in = check_scan_inputs(ScanBackend::kCUDA, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  check_cuda(in);
  const c10::cuda::CUDAGuard device_guard(in.u.device());
  kernels::SelectiveScanParams p;
  fill_scan_params(in, p);
  ScanForwardOutputs o = allocate_forward_outputs(in, return_last_state, at::kFloat, p);  // state in float32
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch("selective_scan forward", [&] { return kernels::cuda::selective_scan_fwd(p, stream); });
  return {o.out, o.out_y, o.last_state};
}

ScanGradients selective_scan_bwd_cuda(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                                  const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                  const OptTensor& delta_bias, const OptTensor& out_y, bool delta_softplus,
                                  c10::string_view rule_name) {
  const kernels::ScanRule rule = parse_scan_rule(rule_name);
  const ScanInputs in = check_scan_inputs(ScanBackend::kCUDA, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  check_cuda(in);
  const c10::cuda::CUDAGuard device_guard(in.u.device());
  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  // The kernels read grad_last_state as float32, like the state they keep.
  const ScanBackwardTensors t = prepare_backward(in, rule, grad_out, grad_last_state, out_y, at::kFloat, p);
  size_t ws_bytes = 0;
  try {
    ws_bytes = kernels::cuda::selective_scan_bwd_workspace_bytes(p);
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK(false, e.what());
  }
  at::Tensor workspace;
  if (ws_bytes > 0) workspace = at::empty({static_cast<int64_t>(ws_bytes)}, in.u.options().dtype(at::kByte));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch("selective_scan backward", [&] {
    return kernels::cuda::selective_scan_bwd(p, ws_bytes > 0 ? workspace.data_ptr() : nullptr, stream);
  });
  return t.results(B, C);
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CUDA, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cuda));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cuda));
}

}  // namespace ops
}  // namespace mamba_lrp
