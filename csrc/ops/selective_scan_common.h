// Argument validation and kernel parameters for the selective scan, shared by the CPU
// and CUDA registrations so both accept and refuse exactly the same inputs.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <utility>

#include "csrc/ops/ops.h"
#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace ops {

// Which dtypes a backend accepts.
enum class ScanBackend { kCPU, kCUDA };

// The inputs of one call, made contiguous in their last dimension (copied if they were
// not) and validated: shapes, dtypes, devices, dstate limit.
struct ScanInputs {
  // B, C always 4-d: (batch, groups, dstate, seqlen). A constant (dim, dstate) one is
  // (batch, dim, dstate, seqlen): for the CPU a stride-0 view over batch and time
  // (B_constant / C_constant; groups is then the other's count, dim if both are constant);
  // for CUDA, whose kernels read time stride 1, copied along seqlen, groups = dim and the
  // other one repeated to dim groups.
  at::Tensor u, delta, A, B, C;
  bool B_constant = false, C_constant = false;
  c10::optional<at::Tensor> D, z, delta_bias;
  bool delta_softplus = false;
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0, groups = 1;
};

// Refuses complex A, B or C (mamba_ssm's S4D-style complex weights) with a message that
// says so: the scan is real-valued on every backend.
void check_real_scan_inputs(const at::Tensor& u, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C);

// The public op's inputs in a form the internal ops accept, from any form selective_scan
// accepts (B, C of shape (batch, dstate, seqlen), (batch, groups, dstate, seqlen) or
// mamba_ssm's (dim, dstate), constant in time; the internal ops take all three): a constant
// B/C may have u's dtype or, with float16/bfloat16 u, float32 (the weights' dtype, as
// mamba_ssm has it): then u, delta, z and a time-varying B/C are taken to float32 and the
// output back to u's dtype (out_dtype), so that B/C are not rounded. Written in ATen ops:
// autograd takes the gradients back to the caller's dtypes. Inputs of other shapes are
// passed on as they are (check_scan_inputs then says what is wrong).
struct ScanKernelForms {
  at::Tensor u, delta, B, C;
  c10::optional<at::Tensor> z;
  at::ScalarType out_dtype;  // the caller's u dtype
};
ScanKernelForms scan_inputs_for_kernels(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                        const at::Tensor& B, const at::Tensor& C,
                                        const c10::optional<at::Tensor>& z);

ScanInputs check_scan_inputs(ScanBackend backend, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                             const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                             const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
                             bool delta_softplus);

// "exact" or "mambalrp"; anything else is an error naming the argument.
kernels::ScanRule parse_scan_rule(c10::string_view rule);

// Fill the input part of the kernel parameters (outputs are set by the caller).
void fill_scan_params(const ScanInputs& in, kernels::SelectiveScanParams& p);

// The forward's outputs, allocated and wired into p: out, out_y (pre-gate y, only with z and
// with_out_y) and last_state (when asked, in `state_dtype`: u's dtype on the CPU, float32 on CUDA).
struct ScanForwardOutputs {
  at::Tensor out;
  c10::optional<at::Tensor> out_y, last_state;
};
ScanForwardOutputs allocate_forward_outputs(const ScanInputs& in, bool return_last_state, at::ScalarType state_dtype,
                                            kernels::SelectiveScanParams& p, bool with_out_y = true);

// The backward's inputs checked against the scan inputs (shape, dtype, device) and made
// contiguous, and the gradients of `rule` allocated; all wired into p. The tensors here
// must outlive the kernel call.
struct ScanBackwardTensors {
  at::Tensor grad_out, grad_last_state, out_y;
  at::Tensor du;
  c10::optional<at::Tensor> ddelta, dA, dB, dC, dD, dz, ddelta_bias;
  // The gradients in the op's output order, dB / dC back in the shapes of the caller's B / C
  // (summed here over what check_scan_inputs copied or repeated for the CUDA kernels).
  ScanGradients results(const at::Tensor& B, const at::Tensor& C) const;
};
ScanBackwardTensors prepare_backward(const ScanInputs& in, kernels::ScanRule rule, const at::Tensor& grad_out,
                                     const c10::optional<at::Tensor>& grad_last_state,
                                     const c10::optional<at::Tensor>& out_y, at::ScalarType state_dtype,
                                     kernels::SelectiveScanBwdParams& p, const at::Tensor& du_into = at::Tensor(),
                                     const at::Tensor& dz_into = at::Tensor(), bool needs_out_y = true);

}  // namespace ops
}  // namespace mamba_lrp
