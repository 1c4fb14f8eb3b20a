// mamba-lrp's op layer, the one public header: every op of the `mamba_lrp` torch library,
// callable from C++ without Python. Each function calls through the dispatcher, so C++
// callers get exactly what torch.ops.mamba_lrp.* gets in Python (the CPU or CUDA kernel, an
// ATen composite on other devices, autograd with the LRP rules). The schemas are declared
// once, in csrc/ops/ops.cpp; each function here is named as its schema.
// Link the program with -Wl,--no-as-needed against libmamba_lrp.so (see CMakeLists.txt).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <tuple>

namespace mamba_lrp {
namespace ops {

using OptTensor = c10::optional<at::Tensor>;

// The selective scan of Mamba (layout and dtypes as mamba_ssm's selective_scan_fn; README):
//   u, delta, z: (batch, dim, seqlen); A: (dim, dstate); D, delta_bias: (dim); B, C:
//   (batch, dstate, seqlen), (batch, groups, dstate, seqlen) or (dim, dstate) (constant).
// Returns out (batch, dim, seqlen) and, if return_last_state, the state after the last
// step (batch, dim, dstate).
// rule "exact": true gradients for u, delta, A, B, C, D, z, delta_bias.
// rule "mambalrp": the same forward; backward with the SSM rule (exp(dt A), dt B, C held
// constant: only u gets gradient, plus D's skip path) and, when z is given, the gate rule
// (half to each factor) with the SiLU identity rule on z. No gradient for delta, A, B, C,
// D, delta_bias.
// Inputs whose last dimension is not contiguous are copied first.
std::tuple<at::Tensor, OptTensor> selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                                 const at::Tensor& B, const at::Tensor& C,
                                                 const OptTensor& D = c10::nullopt, const OptTensor& z = c10::nullopt,
                                                 const OptTensor& delta_bias = c10::nullopt,
                                                 bool delta_softplus = false, bool return_last_state = false,
                                                 c10::string_view rule = "exact");

// The Mamba-2 (SSD) scan: per head h, with a scalar A_h and Δ per step, head h reading
// group g(h) = h / (heads / groups) of B and C,
//   S_t = exp(Δ_t A_h) S_{t-1} + Δ_t x_t ⊗ B_t,  y_t = S_t C_t + D_h x_t   (S: head_dim × dstate)
//   x: (batch, heads * head_dim, seqlen) (channel h * head_dim + p is head h's p-th) or
//      (batch, heads, head_dim, seqlen); delta: (batch, heads, seqlen) (Δ itself: no bias,
//      no softplus here); A, D: (heads); B, C: (batch, groups, dstate, seqlen).
//   float32 or float64, all one dtype and device.
// Returns y in x's shape and, if return_last_state, the state after the last step
// (batch, heads, head_dim, dstate).
// rule "exact": true gradients for x, delta, A, B, C, D (autograd through the chunked form
// in ATen). rule "mambalrp": the same forward; exp(ΔA), Δ, B, C, D held constant, so y is
// linear in x: the backward is the transpose of the scan (_ssd_scan_transpose) and only x
// gets a gradient.
// chunk_size: 0 chooses (on the CPU the per-step form below 16 steps and chunks of 64 from 16
// on, the faster form measured at each length; the environment variable MAMBA_LRP_SSD_CHUNK=N
// overrides it),
// 1 forces the per-step form (one exp per head and step), 2 .. 1024 the chunked SSD form with
// chunks of that size. The CPU runs kernels/cpu/ssd_scan; other devices the ATen composite
// (always chunked: chunks of 64 for 0 and 1).
std::tuple<at::Tensor, OptTensor> ssd_scan(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                           const at::Tensor& B, const at::Tensor& C, const OptTensor& D = c10::nullopt,
                                           bool return_last_state = false, c10::string_view rule = "exact",
                                           int64_t chunk_size = 0);

// ---- LRP rule ops: forward identical to the plain layer, backward replaced by the rule.
// The rules propagate to the activations only: weights and biases get no gradient.

// silu(x); backward g * sigmoid(x) (silu(x)/x held constant: the identity rule).
at::Tensor silu_identity(const at::Tensor& x);

// a * b; backward: half of the relevance to each factor (g_a = g b / 2, g_b = g a / 2).
at::Tensor gate_half(const at::Tensor& a, const at::Tensor& b);

// x * rsqrt(mean(x^2, -1) + eps) * weight; backward with rsqrt(...) held constant.
at::Tensor rms_norm_identity(const at::Tensor& x, const OptTensor& weight, double eps);

// (x - mean) * rsqrt(var + eps) * weight + bias over the last dim; backward with
// rsqrt(var + eps) held constant (the LN rule).
at::Tensor layer_norm_identity(const at::Tensor& x, const OptTensor& weight, const OptTensor& bias, double eps);

// Linear / conv layers with the generalized (mixed-sign) gamma rule in the backward:
// positive and negative parts of inputs and weights, weights pushed by gamma toward their
// sign; gamma = 0 gives the plain gradient. x * grad_x is the rule's input relevance.
at::Tensor linear_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias, double gamma = 0.25);
at::Tensor conv1d_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                        at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                        int64_t groups = 1, double gamma = 0.25);
at::Tensor conv2d_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                        at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                        int64_t groups = 1, double gamma = 0.25);

// The epsilon rule on the same layers: s = g z / (z + epsilon sign(z)), grad_x = W^T s.
at::Tensor linear_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          double epsilon = 1e-6);
at::Tensor conv1d_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                          int64_t groups = 1, double epsilon = 1e-6);
at::Tensor conv2d_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                          int64_t groups = 1, double epsilon = 1e-6);

// The instruction set the CPU scan runs with ("avx512", "avx2", "baseline").
const char* cpu_scan_isa();

// Whether this library registered its CUDA kernels (built against a CUDA Torch): without
// them the scan ops have no kernel for CUDA tensors.
bool has_cuda_kernels();

// ---- Internal ops (leading underscore, as ATen's): the pieces the models' own autograd
// nodes run below autograd. No autograd kernel; not a stable API. Each has a CPU kernel and
// a CUDA kernel or an ATen composite that serves every other device. Their B and C take the
// scan's three forms, each independently, in u's dtype; dB / dC come back in B / C's shape.

// The scan's forward: out, the pre-gate output y (only when z is given) and the last state.
std::tuple<at::Tensor, OptTensor, OptTensor> _selective_scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus, bool return_last_state);

// The backward of `rule`: du, ddelta, dA, dB, dC, dD, dz, ddelta_bias (undefined where the
// rule gives none). out_y is the forward's pre-gate output; needed when z is given.
using ScanGradients = std::tuple<at::Tensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor>;
ScanGradients _selective_scan_bwd(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                                  const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                  const OptTensor& delta_bias, const OptTensor& out_y, bool delta_softplus,
                                  c10::string_view rule);

// The forward that keeps what the MambaLRP backward reads, in place of delta, z and the
// pre-gate y: out and the factors dt = softplus(delta + delta_bias) (or delta + delta_bias),
// gy_scale = silu(z) / 2 and dz_scale = y sigmoid(z) / 2 (both undefined without z), all
// (batch, dim, seqlen). The backward then computes neither softplus nor the gate's sigmoid.
struct LrpScanFactors {
  at::Tensor dt, gy_scale, dz_scale;
};
std::tuple<at::Tensor, LrpScanFactors> _selective_scan_lrp_fwd(const at::Tensor& u, const at::Tensor& delta,
                                                               const at::Tensor& A, const at::Tensor& B,
                                                               const at::Tensor& C, const OptTensor& D,
                                                               const OptTensor& z, const OptTensor& delta_bias,
                                                               bool delta_softplus);
// du and (with z) dz of the MambaLRP rule from those factors. delta_softplus: the forward's
// (dt >= 0 then, which lets the kernel use a cheaper exponential).
std::tuple<at::Tensor, OptTensor> _selective_scan_lrp_bwd(const at::Tensor& grad_out, const LrpScanFactors& factors,
                                                          const at::Tensor& A, const at::Tensor& B,
                                                          const at::Tensor& C, const OptTensor& D,
                                                          bool delta_softplus);

// The scan's output alone (gated when z is given). The CPU kernel writes it over u when u
// is dense (batch, dim, seqlen): u is clobbered. For a forward that keeps none of the scan's
// outputs (the recompute branch, models/ssm_branch.cpp).
at::Tensor _selective_scan_fwd_over_u(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                      const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                      const OptTensor& delta_bias, bool delta_softplus);

// du and (with z) dz of the MambaLRP rule from the scan's inputs alone, for a backward that
// kept no forward outputs: the forward runs again inside (on the CPU row by row, sharing
// its decays exp(dt A) with the reverse scan). Same values as _selective_scan_lrp_fwd then
// _selective_scan_lrp_bwd. overwrite_inputs: du may be written over u and dz over delta
// (both clobbered), for a caller that made them for this call. u_through_silu: u holds
// the conv output c, the scan's input is silu(c), and du is returned at c under the SiLU
// identity rule (the scan's du times sigmoid(c)).
std::tuple<at::Tensor, OptTensor> _selective_scan_lrp_bwd_recompute(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
    bool overwrite_inputs, bool u_through_silu);

// The transpose of ssd_scan as a linear map in x (its MambaLRP backward): dx for the output
// gradient grad_out (x's shape) and, optionally, the last state's gradient (batch, heads,
// head_dim, dstate). Arguments as ssd_scan's.
at::Tensor _ssd_scan_transpose(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& delta,
                               const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                               int64_t chunk_size);

// Which outputs _causal_conv1d_silu computes (any combination, at least one).
enum ConvSiluOutput : int64_t { kConv = 1, kSilu = 2, kSigmoid = 4 };
struct ConvSiluParts {
  at::Tensor conv;     // c
  at::Tensor silu;     // silu(c) = c sigmoid(c)
  at::Tensor sigmoid;  // sigmoid(c)
};
// The depthwise causal conv1d in front of every SSM (K-1 zeros on the left, output as long
// as the input) and the SiLU that follows it, in one pass: x (B, C, L), weight (C, 1, K),
// bias (C) -> the parts asked for by `outputs` (ConvSiluOutput flags), each (B, C, L).
ConvSiluParts _causal_conv1d_silu(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                  int64_t outputs);

// The input gradient of that conv for the output gradient grad_out * scale (scale optional,
// same shape): (B, C, L); no weight gradients. overwrite_grad_out: the CPU kernel may write
// it over grad_out (clobbered; for a caller whose grad_out is its own temporary).
at::Tensor _causal_conv1d_input_grad(const at::Tensor& grad_out, const OptTensor& scale, const at::Tensor& weight,
                                     bool overwrite_grad_out = false);

// scale * (a + x flipped along the sequence) for (B, C, L) tensors, a optional: Vision
// Mamba's bidirectional glue. _flip_add_into writes into out (B, C, L), which may be a view
// (any batch/channel strides, unit stride along L) and may not overlap x or a.
at::Tensor _flip_add(const at::Tensor& x, const OptTensor& a = c10::nullopt, double scale = 1.0);
void _flip_add_into(const at::Tensor& out, const at::Tensor& x, const OptTensor& a = c10::nullopt,
                    double scale = 1.0);

}  // namespace ops
}  // namespace mamba_lrp
