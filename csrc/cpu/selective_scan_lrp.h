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

// The factors alone, for a backward that recomputes the scan's forward: the scan's output
// goes over u and dt over delta (dense (B, D, L) both; otherwise into fresh tensors), so
// that the recomputation allocates two (B, D, L) tensors fewer. u and delta are clobbered.
LrpScanFactors selective_scan_lrp_factors_cpu(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                              const at::Tensor& B, const at::Tensor& C,
                                              const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
                                              const c10::optional<at::Tensor>& delta_bias, bool delta_softplus);

// du and (with z) dz of the MambaLRP rule, from the forward's factors. overwrite_factors:
// du goes over f.dt and dz over f.dz_scale (when dense), which are then gone.
std::pair<at::Tensor, c10::optional<at::Tensor>> selective_scan_lrp_backward_cpu(
    const at::Tensor& grad_out, const LrpScanFactors& f, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, bool delta_softplus, bool overwrite_factors = false);

}  // namespace mamba_lrp
