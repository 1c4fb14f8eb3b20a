// mamba-lrp C++ API: every op of the `mamba_lrp` torch library, callable from C++ without
// Python. Each function calls through the dispatcher, so C++ callers get exactly what
// torch.ops.mamba_lrp.* gets in Python (CPU/CUDA kernels, autograd with the LRP rules).
// Link the program with -Wl,--no-as-needed against libmamba_lrp.so (see CMakeLists.txt).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>
#include <tuple>

namespace mamba_lrp {

// The selective scan of Mamba (layout as mamba_ssm's selective_scan_fn):
//   u, delta, z: (batch, dim, seqlen); A: (dim, dstate);
//   B, C: (batch, dstate, seqlen) or (batch, groups, dstate, seqlen); D, delta_bias: (dim).
// Returns out (batch, dim, seqlen) and, if return_last_state, the state after the last
// step (batch, dim, dstate).
// rule "exact": true gradients for u, delta, A, B, C, D, z, delta_bias.
// rule "mambalrp": the same forward; backward with the SSM rule (exp(dt A), dt B, C held
// constant: only u gets gradient, plus D's skip path) and, when z is given, the gate rule
// (half to each factor) with the SiLU identity rule on z. No gradient for delta, A, B, C,
// D, delta_bias.
// Inputs whose last dimension is not contiguous are copied first.
std::tuple<at::Tensor, c10::optional<at::Tensor>> selective_scan(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D = c10::nullopt, const c10::optional<at::Tensor>& z = c10::nullopt,
    const c10::optional<at::Tensor>& delta_bias = c10::nullopt, bool delta_softplus = false,
    bool return_last_state = false, c10::string_view rule = "exact");

// ---- The two halves of selective_scan's autograd (ops _selective_scan_fwd/_bwd), for code
// that runs the scan inside its own autograd node (models/ssm_branch.cpp).
// Forward: out, the pre-gate output y (only when z is given) and the last state (if asked).
std::tuple<at::Tensor, c10::optional<at::Tensor>, c10::optional<at::Tensor>> selective_scan_forward_parts(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
    const c10::optional<at::Tensor>& delta_bias, bool delta_softplus, bool return_last_state);
// Backward of `rule`: du, ddelta, dA, dB, dC, dD, dz, ddelta_bias (undefined where the rule
// gives none). out_y is the forward's pre-gate output; needed when z is given.
std::tuple<at::Tensor, c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>,
           c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>>
selective_scan_backward_parts(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_last_state,
                              const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C, const c10::optional<at::Tensor>& D,
                              const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
                              const c10::optional<at::Tensor>& out_y, bool delta_softplus, c10::string_view rule);

// ---- LRP rule ops: forward identical to the plain layer, backward replaced by the rule.
// The rules propagate to the activations only: weights and biases get no gradient.

// silu(x); backward g * sigmoid(x) (silu(x)/x held constant: the identity rule).
at::Tensor silu_identity(const at::Tensor& x);

// a * b; backward: half of the relevance to each factor (g_a = g b / 2, g_b = g a / 2).
at::Tensor gate_half(const at::Tensor& a, const at::Tensor& b);

// x * rsqrt(mean(x^2, -1) + eps) * weight; backward with rsqrt(...) held constant.
at::Tensor rms_norm_identity(const at::Tensor& x, const c10::optional<at::Tensor>& weight, double eps);

// (x - mean) * rsqrt(var + eps) * weight + bias over the last dim; backward with
// rsqrt(var + eps) held constant (the LN rule).
at::Tensor layer_norm_identity(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                               const c10::optional<at::Tensor>& bias, double eps);

// Linear / conv layers with the generalized (mixed-sign) gamma rule in the backward:
// positive and negative parts of inputs and weights, weights pushed by gamma toward their
// sign; gamma = 0 gives the plain gradient. x * grad_x is the rule's input relevance.
at::Tensor linear_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        double gamma = 0.25);
at::Tensor conv1d_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                        int64_t groups = 1, double gamma = 0.25);
at::Tensor conv2d_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                        int64_t groups = 1, double gamma = 0.25);

// The epsilon rule on the same layers: s = g z / (z + epsilon sign(z)), grad_x = W^T s.
at::Tensor linear_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          double epsilon = 1e-6);
at::Tensor conv1d_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                          int64_t groups = 1, double epsilon = 1e-6);
at::Tensor conv2d_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          at::IntArrayRef stride = 1, at::IntArrayRef padding = 0, at::IntArrayRef dilation = 1,
                          int64_t groups = 1, double epsilon = 1e-6);

// The instruction set the CPU scan runs with ("avx512", "avx2", "baseline").
const char* cpu_scan_isa();

}  // namespace mamba_lrp
