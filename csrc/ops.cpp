// The mamba_lrp torch library: every op schema is declared here, once. Kernels register
// in their own files (csrc/cpu, csrc/cuda, csrc/autograd, rules/).
#include "csrc/ops.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {

TORCH_LIBRARY(mamba_lrp, m) {
  m.def(
      "selective_scan(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D=None, Tensor? z=None, "
      "Tensor? delta_bias=None, bool delta_softplus=False, bool return_last_state=False, str rule=\"exact\") "
      "-> (Tensor, Tensor?)");
  // Internal: the forward that also returns the pre-gate output y (needed by the backward
  // when z is given), and the backward of either rule.
  m.def(
      "_selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus, bool return_last_state) -> (Tensor, Tensor?, Tensor?)");
  m.def(
      "_selective_scan_bwd(Tensor grad_out, Tensor? grad_last_state, Tensor u, Tensor delta, Tensor A, Tensor B, "
      "Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, Tensor? out_y, bool delta_softplus, str rule) "
      "-> (Tensor, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?)");

  m.def("silu_identity(Tensor x) -> Tensor");
  m.def("gate_half(Tensor a, Tensor b) -> Tensor");
  m.def("rms_norm_identity(Tensor x, Tensor? weight, float eps) -> Tensor");
  m.def("layer_norm_identity(Tensor x, Tensor? weight, Tensor? bias, float eps) -> Tensor");
  m.def("linear_gamma(Tensor x, Tensor weight, Tensor? bias, float gamma=0.25) -> Tensor");
  m.def(
      "conv1d_gamma(Tensor x, Tensor weight, Tensor? bias, int[1] stride=1, int[1] padding=0, int[1] dilation=1, "
      "int groups=1, float gamma=0.25) -> Tensor");
  m.def(
      "conv2d_gamma(Tensor x, Tensor weight, Tensor? bias, int[2] stride=1, int[2] padding=0, int[2] dilation=1, "
      "int groups=1, float gamma=0.25) -> Tensor");
  m.def("linear_epsilon(Tensor x, Tensor weight, Tensor? bias, float epsilon=1e-6) -> Tensor");
  m.def(
      "conv1d_epsilon(Tensor x, Tensor weight, Tensor? bias, int[1] stride=1, int[1] padding=0, int[1] dilation=1, "
      "int groups=1, float epsilon=1e-6) -> Tensor");
  m.def(
      "conv2d_epsilon(Tensor x, Tensor weight, Tensor? bias, int[2] stride=1, int[2] padding=0, int[2] dilation=1, "
      "int groups=1, float epsilon=1e-6) -> Tensor");
}

namespace {
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}
}  // namespace

std::tuple<at::Tensor, c10::optional<at::Tensor>> selective_scan(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
    bool delta_softplus, bool return_last_state, c10::string_view rule) {
  static auto handle = op<std::tuple<at::Tensor, c10::optional<at::Tensor>>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, bool, bool,
      c10::string_view)>("mamba_lrp::selective_scan");
  return handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, rule);
}

std::tuple<at::Tensor, c10::optional<at::Tensor>, c10::optional<at::Tensor>> selective_scan_forward_parts(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
    bool delta_softplus, bool return_last_state) {
  using OptTensor = c10::optional<at::Tensor>;
  static auto handle = op<std::tuple<at::Tensor, OptTensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
      const OptTensor&, const OptTensor&, bool, bool)>("mamba_lrp::_selective_scan_fwd");
  return handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state);
}

std::tuple<at::Tensor, c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>,
           c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>, c10::optional<at::Tensor>>
selective_scan_backward_parts(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_last_state,
                              const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C, const c10::optional<at::Tensor>& D,
                              const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& delta_bias,
                              const c10::optional<at::Tensor>& out_y, bool delta_softplus, c10::string_view rule) {
  using OptTensor = c10::optional<at::Tensor>;
  static auto handle =
      op<std::tuple<at::Tensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor, OptTensor>(
          const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
          const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
          const OptTensor&, bool, c10::string_view)>("mamba_lrp::_selective_scan_bwd");
  return handle.call(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias, out_y, delta_softplus, rule);
}

at::Tensor silu_identity(const at::Tensor& x) {
  static auto handle = op<at::Tensor(const at::Tensor&)>("mamba_lrp::silu_identity");
  return handle.call(x);
}

at::Tensor gate_half(const at::Tensor& a, const at::Tensor& b) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&)>("mamba_lrp::gate_half");
  return handle.call(a, b);
}

at::Tensor rms_norm_identity(const at::Tensor& x, const c10::optional<at::Tensor>& weight, double eps) {
  static auto handle =
      op<at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&, double)>("mamba_lrp::rms_norm_identity");
  return handle.call(x, weight, eps);
}

at::Tensor layer_norm_identity(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                               const c10::optional<at::Tensor>& bias, double eps) {
  static auto handle = op<at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&,
                                     const c10::optional<at::Tensor>&, double)>("mamba_lrp::layer_norm_identity");
  return handle.call(x, weight, bias, eps);
}

at::Tensor linear_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        double gamma) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, double)>(
      "mamba_lrp::linear_gamma");
  return handle.call(x, weight, bias, gamma);
}

using ConvRuleSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                      at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, double);

at::Tensor conv1d_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        double gamma) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv1d_gamma");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, gamma);
}

at::Tensor conv2d_gamma(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        double gamma) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv2d_gamma");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, gamma);
}

at::Tensor linear_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          double epsilon) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, double)>(
      "mamba_lrp::linear_epsilon");
  return handle.call(x, weight, bias, epsilon);
}

at::Tensor conv1d_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          double epsilon) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv1d_epsilon");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, epsilon);
}

at::Tensor conv2d_epsilon(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          double epsilon) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv2d_epsilon");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, epsilon);
}

const char* cpu_scan_isa() { return kernels::cpu::selected_isa(); }

}  // namespace mamba_lrp
