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

#include "csrc/selective_scan_common.h"
#include "kernels/cuda/selective_scan_cuda.h"

namespace mamba_lrp {
namespace {

using OptTensor = c10::optional<at::Tensor>;

// Inputs must be CUDA tensors on one device (check_scan_inputs has checked "one device").
void check_cuda(const ScanInputs& in) {
  TORCH_CHECK(in.u.is_cuda(), "selective_scan (CUDA kernel): u must be a CUDA tensor, got one on ", in.u.device());
  TORCH_CHECK(in.u.device().has_index(), "selective_scan (CUDA kernel): u's device has no index");
}

void check_same_device(const char* name, const at::Tensor& t, const at::Tensor& u) {
  TORCH_CHECK(t.device() == u.device(), "selective_scan backward: ", name, " is on ", t.device(), " but u is on ",
              u.device(), "; all inputs must be on one device");
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
  at::Tensor out = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L)
  p.out = out.data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  OptTensor out_y, last_state;
  if (in.z) {
    out_y = at::empty({in.batch, in.dim, in.seqlen}, in.u.options());  // (B, D, L) pre-gate y
    p.out_y = out_y->data_ptr();
    p.out_y_batch_stride = out_y->stride(0);
    p.out_y_dim_stride = out_y->stride(1);
  }
  if (return_last_state) {
    last_state = at::empty({in.batch, in.dim, in.dstate}, in.u.options().dtype(at::kFloat));  // (B, D, N) float32
    p.last_state = last_state->data_ptr();
  }
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch("selective_scan forward", [&] { return kernels::gpu::selective_scan_fwd(p, stream); });
  return {out, out_y, last_state};
}

std::tuple<at::Tensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor>
selective_scan_bwd_cuda(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                        const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                        const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, const OptTensor& out_y,
                        bool delta_softplus, c10::string_view rule_name) {
  const kernels::ScanRule rule = parse_scan_rule(rule_name);
  const ScanInputs in = check_scan_inputs(ScanBackend::kCUDA, u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  check_cuda(in);
  check_same_device("grad_out", grad_out, in.u);
  TORCH_CHECK(grad_out.sizes() == u.sizes() && grad_out.scalar_type() == u.scalar_type(),
              "selective_scan backward: grad_out must match u (shape ", shape_str(u), ", dtype ", u.scalar_type(),
              "), got ", shape_str(grad_out), " ", grad_out.scalar_type());
  const c10::cuda::CUDAGuard device_guard(in.u.device());

  kernels::SelectiveScanBwdParams p;
  fill_scan_params(in, p);
  p.rule = rule;
  const at::Tensor gout = grad_out.contiguous();
  p.grad_out = gout.data_ptr();
  p.grad_out_batch_stride = gout.stride(0);
  p.grad_out_dim_stride = gout.stride(1);
  at::Tensor gls;
  if (grad_last_state && grad_last_state->defined()) {
    check_same_device("grad_last_state", *grad_last_state, in.u);
    TORCH_CHECK(grad_last_state->sizes() == at::IntArrayRef({in.batch, in.dim, in.dstate}),
                "selective_scan backward: grad_last_state must have shape (batch, dim, dstate), got ",
                shape_str(*grad_last_state));
    gls = grad_last_state->to(at::kFloat).contiguous();  // the kernels read it as float32
    p.grad_last_state = gls.data_ptr();
  }
  at::Tensor y;
  if (in.z) {
    TORCH_CHECK(out_y && out_y->defined() && out_y->sizes() == u.sizes(),
                "selective_scan backward: out_y (the pre-gate output, shape of u) is needed when z is given");
    check_same_device("out_y", *out_y, in.u);
    y = out_y->to(u.scalar_type()).contiguous();
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
    dA = at::empty({in.dim, in.dstate}, in.A.options());  // (D, N) float32, dense
    p.dA = dA->data_ptr();
    dB = at::empty(in.B.sizes(), in.B.options());  // (B, G, N, L), dense
    p.dB = dB->data_ptr();
    dC = at::empty(in.C.sizes(), in.C.options());
    p.dC = dC->data_ptr();
    if (in.D) {
      dD = at::empty({in.dim}, in.D->options());
      p.dD = dD->data_ptr();
    }
    if (in.delta_bias) {
      ddelta_bias = at::empty({in.dim}, in.delta_bias->options());
      p.ddelta_bias = ddelta_bias->data_ptr();
    }
  }
  size_t ws_bytes = 0;
  try {
    ws_bytes = kernels::gpu::selective_scan_bwd_workspace_bytes(p);
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK(false, e.what());
  }
  at::Tensor workspace;
  if (ws_bytes > 0) workspace = at::empty({static_cast<int64_t>(ws_bytes)}, in.u.options().dtype(at::kByte));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch("selective_scan backward", [&] {
    return kernels::gpu::selective_scan_bwd(p, ws_bytes > 0 ? workspace.data_ptr() : nullptr, stream);
  });
  if (dB && B.dim() == 3) {  // back to the caller's (batch, dstate, seqlen)
    dB = dB->squeeze(1);
    dC = dC->squeeze(1);
  }
  return {du, ddelta, dA, dB, dC, dD, dz, ddelta_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CUDA, m) {
  m.impl("_selective_scan_fwd", TORCH_FN(selective_scan_fwd_cuda));
  m.impl("_selective_scan_bwd", TORCH_FN(selective_scan_bwd_cuda));
}

}  // namespace mamba_lrp
