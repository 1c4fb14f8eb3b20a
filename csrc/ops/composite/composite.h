// The internal ops written in ATen, for every device without a kernel of its own (CUDA for
// the conv and flip ops, any other backend for all of them). Registered for
// CompositeExplicitAutograd, so a backend kernel (csrc/ops/cpu, csrc/ops/cuda) takes
// precedence where there is one; the CPU kernels also call these for the dtypes and
// shapes they do not handle. Same values as the kernels, to rounding.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace mamba_lrp {
namespace ops {
namespace composite {

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, OptTensor, OptTensor> selective_scan_lrp_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus);
std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd(const at::Tensor& grad_out, const at::Tensor& dt,
                                                         const OptTensor& gy_scale, const OptTensor& dz_scale,
                                                         const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                                         const OptTensor& D, bool delta_softplus);
at::Tensor selective_scan_fwd_over_u(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                     const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                     const OptTensor& delta_bias, bool delta_softplus);
std::tuple<at::Tensor, OptTensor> selective_scan_lrp_bwd_recompute(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
    bool overwrite_inputs, bool u_through_silu);

std::tuple<OptTensor, OptTensor, OptTensor> causal_conv1d_silu(const at::Tensor& x, const at::Tensor& weight,
                                                               const OptTensor& bias, int64_t outputs);
at::Tensor causal_conv1d_input_grad(const at::Tensor& grad_out, const OptTensor& scale, const at::Tensor& weight,
                                    bool overwrite_grad_out);

at::Tensor flip_add(const at::Tensor& x, const OptTensor& a, double scale);
void flip_add_into(const at::Tensor& out, const at::Tensor& x, const OptTensor& a, double scale);

// The Mamba-2 (SSD) scan, chunked, differentiable in every input (ssd_scan_chunked.cpp).
std::tuple<at::Tensor, OptTensor> ssd_scan(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                           const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                           bool return_last_state, c10::string_view rule, int64_t chunk_size);
at::Tensor ssd_scan_transpose(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& delta,
                              const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                              int64_t chunk_size);

// The argument checks the kernels and the composites share.
void check_flip_add_args(const at::Tensor& out, const at::Tensor& x, const OptTensor& a);
void check_conv_silu_outputs(int64_t outputs);

}  // namespace composite
}  // namespace ops
}  // namespace mamba_lrp
