// Norm rules (DESIGN.md §1): the normalising factor rsqrt(...) is held constant, so the
// norm is linear in x in the backward and conserves relevance (without its bias).
#include <torch/library.h>

#include "csrc/io/errors.h"
#include "rules/rule_function.h"

namespace mamba_lrp {
namespace rules {
namespace {

void check_norm_args(const char* op, const at::Tensor& x, const OptTensor& weight, const OptTensor& bias, double eps) {
  TORCH_CHECK(x.dim() >= 1 && x.is_floating_point(), op, ": x must be a floating-point tensor of rank >= 1, got ",
              x.scalar_type(), " ", io::shape_str(x));
  for (const auto& [name, t] : {std::pair<const char*, const OptTensor&>{"weight", weight}, {"bias", bias}}) {
    if (!t) continue;
    TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(-1), op, ": ", name, " must have shape (", x.size(-1),
                ") (x's last dimension), got ", io::shape_str(*t));
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(), op, ": ", name,
                " must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ", t->scalar_type(),
                ", ", t->device());
  }
  TORCH_CHECK(eps >= 0 && std::isfinite(eps), op, ": eps must be finite and >= 0, got ", eps);
}

at::Tensor rms_factor(const at::Tensor& x, double eps) { return at::rsqrt(x.square().mean(-1, true) + eps); }

at::Tensor rms_norm_identity_forward(const at::Tensor& x, const OptTensor& weight, double eps) {
  check_norm_args("rms_norm_identity", x, weight, c10::nullopt, eps);
  at::Tensor y = x * rms_factor(x, eps);
  return weight ? y * *weight : y;
}

class RmsNormIdentity : public torch::autograd::Function<RmsNormIdentity> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const OptTensor& weight, double eps) {
    const at::Tensor r = rms_factor(x, eps);  // (..., 1)
    ctx->save_for_backward({r, value_or_undefined(weight)});
    at::Tensor y = x * r;
    return weight ? y * *weight : y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor g = grads[0] * saved[0];
    if (saved[1].defined()) g = g * saved[1];
    return {g, at::Tensor(), at::Tensor()};
  }
};

at::Tensor layer_norm_identity_forward(const at::Tensor& x, const OptTensor& weight, const OptTensor& bias,
                                       double eps) {
  check_norm_args("layer_norm_identity", x, weight, bias, eps);
  const int64_t n = x.size(-1);
  return at::layer_norm(x, {n}, weight, bias, eps);
}

// y = (x - mean(x)) * r * w + b with r = rsqrt(var + eps) constant: the backward is that of
// the centring, gx = r (gw - mean(gw)), gw = g w.
class LayerNormIdentity : public torch::autograd::Function<LayerNormIdentity> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const OptTensor& weight,
                            const OptTensor& bias, double eps) {
    const at::Tensor r = at::rsqrt(x.var(-1, /*unbiased=*/false, /*keepdim=*/true) + eps);
    ctx->save_for_backward({r, value_or_undefined(weight)});
    return layer_norm_identity_forward(x, weight, bias, eps);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor gw = saved[1].defined() ? grads[0] * saved[1] : grads[0];
    return {(gw - gw.mean(-1, true)) * saved[0], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor rms_norm_identity_autograd(const at::Tensor& x, const OptTensor& weight, double eps) {
  check_norm_args("rms_norm_identity", x, weight, c10::nullopt, eps);
  return RmsNormIdentity::apply(x, weight, eps);
}

at::Tensor layer_norm_identity_autograd(const at::Tensor& x, const OptTensor& weight, const OptTensor& bias,
                                        double eps) {
  check_norm_args("layer_norm_identity", x, weight, bias, eps);
  return LayerNormIdentity::apply(x, weight, bias, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("rms_norm_identity", TORCH_FN(rms_norm_identity_forward));
  m.impl("layer_norm_identity", TORCH_FN(layer_norm_identity_forward));
}

TORCH_LIBRARY_IMPL(mamba_lrp, Autograd, m) {
  m.impl("rms_norm_identity", TORCH_FN(rms_norm_identity_autograd));
  m.impl("layer_norm_identity", TORCH_FN(layer_norm_identity_autograd));
}

}  // namespace rules
}  // namespace mamba_lrp
