// ssd_scan above the backends. rule "mambalrp": an autograd Function whose backward is the
// transpose of the scan as a linear map in x (exp(ΔA), Δ, B, C, D held constant), run by
// _ssd_scan_transpose; only x gets a gradient. rule "exact": the chunked form in ATen ops
// (csrc/ops/composite/ssd_scan_chunked.cpp), recorded by autograd, which gives the true
// gradients of every input; when nothing needs a gradient, the backend's kernel runs instead.
#include <torch/autograd.h>
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"
#include "csrc/ops/ssd_scan_common.h"

namespace mamba_lrp {
namespace ops {
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SsdScanLrpFunction : public torch::autograd::Function<SsdScanLrpFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                               const at::Tensor& B, const at::Tensor& C, const OptTensor& D, bool return_last_state,
                               int64_t chunk_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, last] = ops::ssd_scan(x, delta, A, B, C, D, return_last_state, "mambalrp", chunk_size);
    // y is linear in x: the backward reads the constants only, never x.
    ctx->save_for_backward({delta, A, B, C, D ? *D : at::Tensor()});
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    if (last) return {out, *last};
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& delta = saved[0];
    const at::Tensor grad_out =
        grads[0].defined() ? grads[0] : at::zeros(ctx->saved_data["x_sizes"].toIntVector(), delta.options());
    const OptTensor grad_last = grads.size() > 1 && grads[1].defined() ? OptTensor(grads[1]) : c10::nullopt;
    const OptTensor D = saved[4].defined() ? OptTensor(saved[4]) : c10::nullopt;
    const at::Tensor dx = _ssd_scan_transpose(grad_out, grad_last, delta, saved[1], saved[2], saved[3], D,
                                              ctx->saved_data["chunk_size"].toInt());
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, OptTensor> ssd_scan_autograd(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                                    const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                                    bool return_last_state, c10::string_view rule,
                                                    int64_t chunk_size) {
  const bool mambalrp = ssd_rule_is_mambalrp(rule);
  check_ssd_chunk_size(chunk_size);
  if (mambalrp) {
    auto outs = SsdScanLrpFunction::apply(x, delta, A, B, C, D, return_last_state, chunk_size);
    return {outs[0], outs.size() > 1 ? OptTensor(outs[1]) : c10::nullopt};
  }
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (x.requires_grad() || delta.requires_grad() || A.requires_grad() || B.requires_grad() ||
                           C.requires_grad() || (D && D->requires_grad()));
  if (needs_grad) return composite::ssd_scan(x, delta, A, B, C, D, return_last_state, rule, chunk_size);
  at::AutoDispatchBelowADInplaceOrView guard;
  return ssd_scan(x, delta, A, B, C, D, return_last_state, rule, chunk_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, Autograd, m) {
  m.impl("ssd_scan", TORCH_FN(ssd_scan_autograd));
}

}  // namespace ops
}  // namespace mamba_lrp
