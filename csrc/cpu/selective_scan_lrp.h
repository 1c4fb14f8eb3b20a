// The selective scan's forward that keeps what its MambaLRP backward reads, and that
// backward, on the CPU (kernels/selective_scan_params.h, lrp_*). The autograd kernel of
// selective_scan uses them for rule "mambalrp" on CPU tensors: the backward then neither
// recomputes softplus(delta + bias) nor the gate's sigmoid, and the forward keeps three
// (batch, dim, seqlen) tensors in place of delta, z and the pre-gate y.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <utility>

namespace mamba_lrp {

struct LrpScanFactors {
  at::Tensor dt;        // softplus(delta + delta_bias) (or delta + delta_bias), (B, D, L)
  at::Tensor gy_scale;  // silu(z) / 2, (B, D, L); undefined without z
  at::Tensor dz_scale;  // y sigmoid(z) / 2, (B, D, L); undefined without z
};

// out (as selective_scan's) and the factors.
std::pair<at::Tensor, LrpScanFactors> selective_scan_lrp_forward_cpu(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
    const c10::optional<at::Tensor>& delta_bias, bool delta_softplus);

// The scan's output alone (gated when z is given), written over u when u is dense
// (B, D, L), which is then clobbered: for the recomputing branch's forward, which keeps
// none of the scan's outputs.
at::Tensor selective_scan_output_over_u_cpu(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                            const at::Tensor& B, const at::Tensor& C,
                                            const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
                                            const c10::optional<at::Tensor>& delta_bias, bool delta_softplus);

// du and (with z) dz of the MambaLRP rule, from the forward's factors.
std::pair<at::Tensor, c10::optional<at::Tensor>> selective_scan_lrp_backward_cpu(
    const at::Tensor& grad_out, const LrpScanFactors& f, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, bool delta_softplus);

// du and (with z) dz of the MambaLRP rule from the scan's inputs, for a backward that kept
// no forward outputs: the forward runs again row by row inside, sharing its decays
// exp(dt A) with the reverse scan (kernels/cpu selective_scan_bwd_lrp_recompute). Same
// values as selective_scan_lrp_forward_cpu then selective_scan_lrp_backward_cpu.
// overwrite_inputs: du goes over u and dz over delta when both are dense (B, D, L), for a
// caller that recomputed them for this call (they are clobbered). u_through_silu: u holds
// the conv output c, the scan's input is silu(c), and du is returned at c under the SiLU
// identity rule (the scan's du times sigmoid(c)): one pass over c instead of three.
std::pair<at::Tensor, c10::optional<at::Tensor>> selective_scan_lrp_backward_recomputing_cpu(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
    const c10::optional<at::Tensor>& delta_bias, bool delta_softplus, bool overwrite_inputs,
    bool u_through_silu = false);

}  // namespace mamba_lrp
