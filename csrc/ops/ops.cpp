// The mamba_lrp torch library: every op schema is declared here, once, and every C++ entry
// point of csrc/ops/ops.h calls through the dispatcher. Kernels register in their own files:
// csrc/ops/cpu, csrc/ops/cuda, csrc/ops/composite (ATen, for every other device),
// csrc/ops/autograd, and the rule ops' autograd kernels in rules/.
#include "csrc/ops/ops.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "kernels/cpu/selective_scan_cpu.h"

namespace mamba_lrp {
namespace ops {

TORCH_LIBRARY(mamba_lrp, m) {
  m.def(
      "selective_scan(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D=None, Tensor? z=None, "
      "Tensor? delta_bias=None, bool delta_softplus=False, bool return_last_state=False, str rule=\"exact\") "
      "-> (Tensor, Tensor?)");
  m.def(
      "ssd_scan(Tensor x, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D=None, bool return_last_state=False, "
      "str rule=\"exact\", int chunk_size=0) -> (Tensor, Tensor?)");
  // Internal (csrc/ops/ops.h says what each computes).
  m.def(
      "_ssd_scan_transpose(Tensor grad_out, Tensor? grad_last_state, Tensor delta, Tensor A, Tensor B, Tensor C, "
      "Tensor? D, int chunk_size) -> Tensor");
  m.def(
      "_selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus, bool return_last_state) -> (Tensor, Tensor?, Tensor?)");
  m.def(
      "_selective_scan_bwd(Tensor grad_out, Tensor? grad_last_state, Tensor u, Tensor delta, Tensor A, Tensor B, "
      "Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, Tensor? out_y, bool delta_softplus, str rule) "
      "-> (Tensor, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?, Tensor?)");
  m.def(
      "_selective_scan_lrp_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus) -> (Tensor out, Tensor dt, Tensor? gy_scale, Tensor? dz_scale)");
  m.def(
      "_selective_scan_lrp_bwd(Tensor grad_out, Tensor dt, Tensor? gy_scale, Tensor? dz_scale, Tensor A, Tensor B, "
      "Tensor C, Tensor? D, bool delta_softplus) -> (Tensor du, Tensor? dz)");
  m.def(
      "_selective_scan_fwd_over_u(Tensor(a!) u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus) -> Tensor");
  m.def(
      "_selective_scan_lrp_bwd_recompute(Tensor grad_out, Tensor(a!) u, Tensor(b!) delta, Tensor A, Tensor B, "
      "Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, bool delta_softplus, bool overwrite_inputs, "
      "bool u_through_silu) -> (Tensor du, Tensor? dz)");
  m.def("_causal_conv1d_silu(Tensor x, Tensor weight, Tensor? bias, int outputs) -> (Tensor?, Tensor?, Tensor?)");
  m.def(
      "_causal_conv1d_input_grad(Tensor(a!) grad_out, Tensor? scale, Tensor weight, bool overwrite_grad_out) "
      "-> Tensor");
  m.def("_flip_add(Tensor x, Tensor? a, float scale) -> Tensor");
  m.def("_flip_add_into(Tensor(a!) out, Tensor x, Tensor? a, float scale) -> ()");
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

std::tuple<at::Tensor, OptTensor> selective_scan(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
    bool delta_softplus, bool return_last_state, c10::string_view rule) {
  static auto handle = op<std::tuple<at::Tensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const OptTensor&, const OptTensor&, const OptTensor&, bool, bool,
      c10::string_view)>("mamba_lrp::selective_scan");
  return handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, rule);
}

std::tuple<at::Tensor, OptTensor> ssd_scan(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                           const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                           bool return_last_state, c10::string_view rule, int64_t chunk_size) {
  static auto handle = op<std::tuple<at::Tensor, OptTensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, const at::Tensor&, const OptTensor&,
                                                            bool, c10::string_view, int64_t)>("mamba_lrp::ssd_scan");
  return handle.call(x, delta, A, B, C, D, return_last_state, rule, chunk_size);
}

at::Tensor _ssd_scan_transpose(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& delta,
                               const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                               int64_t chunk_size) {
  static auto handle = op<at::Tensor(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
                                     const at::Tensor&, const at::Tensor&, const OptTensor&, int64_t)>(
      "mamba_lrp::_ssd_scan_transpose");
  return handle.call(grad_out, grad_last_state, delta, A, B, C, D, chunk_size);
}

at::Tensor silu_identity(const at::Tensor& x) {
  static auto handle = op<at::Tensor(const at::Tensor&)>("mamba_lrp::silu_identity");
  return handle.call(x);
}

at::Tensor gate_half(const at::Tensor& a, const at::Tensor& b) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&)>("mamba_lrp::gate_half");
  return handle.call(a, b);
}

at::Tensor rms_norm_identity(const at::Tensor& x, const OptTensor& weight, double eps) {
  static auto handle =
      op<at::Tensor(const at::Tensor&, const OptTensor&, double)>("mamba_lrp::rms_norm_identity");
  return handle.call(x, weight, eps);
}

at::Tensor layer_norm_identity(const at::Tensor& x, const OptTensor& weight,
                               const OptTensor& bias, double eps) {
  static auto handle = op<at::Tensor(const at::Tensor&, const OptTensor&,
                                     const OptTensor&, double)>("mamba_lrp::layer_norm_identity");
  return handle.call(x, weight, bias, eps);
}

at::Tensor linear_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                        double gamma) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, double)>(
      "mamba_lrp::linear_gamma");
  return handle.call(x, weight, bias, gamma);
}

using ConvRuleSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&,
                                      at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, double);

at::Tensor conv1d_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        double gamma) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv1d_gamma");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, gamma);
}

at::Tensor conv2d_gamma(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        double gamma) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv2d_gamma");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, gamma);
}

at::Tensor linear_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          double epsilon) {
  static auto handle = op<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, double)>(
      "mamba_lrp::linear_epsilon");
  return handle.call(x, weight, bias, epsilon);
}

at::Tensor conv1d_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          double epsilon) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv1d_epsilon");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, epsilon);
}

at::Tensor conv2d_epsilon(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          double epsilon) {
  static auto handle = op<ConvRuleSignature>("mamba_lrp::conv2d_epsilon");
  return handle.call(x, weight, bias, stride, padding, dilation, groups, epsilon);
}

const char* cpu_scan_isa() { return kernels::cpu::selected_isa(); }

bool has_cuda_kernels() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("mamba_lrp::_selective_scan_fwd", "")
      .hasKernelForDispatchKey(c10::DispatchKey::CUDA);
}

// ---- internal ops

std::tuple<at::Tensor, OptTensor, OptTensor> _selective_scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                                                                 const at::Tensor& A, const at::Tensor& B,
                                                                 const at::Tensor& C, const OptTensor& D,
                                                                 const OptTensor& z, const OptTensor& delta_bias,
                                                                 bool delta_softplus, bool return_last_state) {
  static auto handle = op<std::tuple<at::Tensor, OptTensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
      const OptTensor&, const OptTensor&, bool, bool)>("mamba_lrp::_selective_scan_fwd");
  return handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state);
}

ScanGradients _selective_scan_bwd(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& u,
                                  const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                  const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                  const OptTensor& delta_bias, const OptTensor& out_y, bool delta_softplus,
                                  c10::string_view rule) {
  static auto handle = op<ScanGradients(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                                        const OptTensor&, const OptTensor&, const OptTensor&, bool,
                                        c10::string_view)>("mamba_lrp::_selective_scan_bwd");
  return handle.call(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias, out_y, delta_softplus, rule);
}

std::tuple<at::Tensor, LrpScanFactors> _selective_scan_lrp_fwd(const at::Tensor& u, const at::Tensor& delta,
                                                               const at::Tensor& A, const at::Tensor& B,
                                                               const at::Tensor& C, const OptTensor& D,
                                                               const OptTensor& z, const OptTensor& delta_bias,
                                                               bool delta_softplus) {
  static auto handle = op<std::tuple<at::Tensor, at::Tensor, OptTensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
      const OptTensor&, const OptTensor&, bool)>("mamba_lrp::_selective_scan_lrp_fwd");
  auto [out, dt, gy_scale, dz_scale] = handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  return {out, LrpScanFactors{dt, gy_scale.value_or(at::Tensor()), dz_scale.value_or(at::Tensor())}};
}

std::tuple<at::Tensor, OptTensor> _selective_scan_lrp_bwd(const at::Tensor& grad_out, const LrpScanFactors& factors,
                                                          const at::Tensor& A, const at::Tensor& B,
                                                          const at::Tensor& C, const OptTensor& D,
                                                          bool delta_softplus) {
  static auto handle = op<std::tuple<at::Tensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
      const at::Tensor&, const OptTensor&, bool)>("mamba_lrp::_selective_scan_lrp_bwd");
  auto opt = [](const at::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; };
  return handle.call(grad_out, factors.dt, opt(factors.gy_scale), opt(factors.dz_scale), A, B, C, D, delta_softplus);
}

at::Tensor _selective_scan_fwd_over_u(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                      const at::Tensor& B, const at::Tensor& C, const OptTensor& D, const OptTensor& z,
                                      const OptTensor& delta_bias, bool delta_softplus) {
  static auto handle =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    const OptTensor&, const OptTensor&, const OptTensor&, bool)>("mamba_lrp::_selective_scan_fwd_over_u");
  return handle.call(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
}

std::tuple<at::Tensor, OptTensor> _selective_scan_lrp_bwd_recompute(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias, bool delta_softplus,
    bool overwrite_inputs, bool u_through_silu) {
  static auto handle = op<std::tuple<at::Tensor, OptTensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const OptTensor&, const OptTensor&, const OptTensor&, bool, bool, bool)>(
      "mamba_lrp::_selective_scan_lrp_bwd_recompute");
  return handle.call(grad_out, u, delta, A, B, C, D, z, delta_bias, delta_softplus, overwrite_inputs, u_through_silu);
}

ConvSiluParts _causal_conv1d_silu(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                                  int64_t outputs) {
  static auto handle = op<std::tuple<OptTensor, OptTensor, OptTensor>(const at::Tensor&, const at::Tensor&,
                                                                      const OptTensor&, int64_t)>(
      "mamba_lrp::_causal_conv1d_silu");
  auto [conv, silu, sigmoid] = handle.call(x, weight, bias, outputs);
  return {conv.value_or(at::Tensor()), silu.value_or(at::Tensor()), sigmoid.value_or(at::Tensor())};
}

at::Tensor _causal_conv1d_input_grad(const at::Tensor& grad_out, const OptTensor& scale, const at::Tensor& weight,
                                     bool overwrite_grad_out) {
  static auto handle = op<at::Tensor(const at::Tensor&, const OptTensor&, const at::Tensor&, bool)>(
      "mamba_lrp::_causal_conv1d_input_grad");
  return handle.call(grad_out, scale, weight, overwrite_grad_out);
}

at::Tensor _flip_add(const at::Tensor& x, const OptTensor& a, double scale) {
  static auto handle = op<at::Tensor(const at::Tensor&, const OptTensor&, double)>("mamba_lrp::_flip_add");
  return handle.call(x, a, scale);
}

void _flip_add_into(const at::Tensor& out, const at::Tensor& x, const OptTensor& a, double scale) {
  static auto handle =
      op<void(const at::Tensor&, const at::Tensor&, const OptTensor&, double)>("mamba_lrp::_flip_add_into");
  handle.call(out, x, a, scale);
}

}  // namespace ops
}  // namespace mamba_lrp
