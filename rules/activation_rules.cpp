// SiLU identity rule and the gate half rule (DESIGN.md §1).
#include <torch/library.h>

#include "rules/rule_function.h"

namespace mamba_lrp {
namespace rules {
namespace {

at::Tensor silu_identity_forward(const at::Tensor& x) {
  TORCH_CHECK(x.is_floating_point(), "silu_identity: x must be a floating-point tensor, got ", x.scalar_type());
  return at::silu(x);
}

// silu(x) = x * sigmoid(x); the rule holds silu(x)/x = sigmoid(x) constant, so the
// relevance x * grad passes through unchanged: R_in = x * g * sigmoid(x) = silu(x) * g.
class SiluIdentity : public torch::autograd::Function<SiluIdentity> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return silu_identity_forward(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    return {grads[0] * at::sigmoid(x)};
  }
};

at::Tensor gate_half_forward(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.is_floating_point() && b.scalar_type() == a.scalar_type(),
              "gate_half: a and b must be floating-point tensors of one dtype, got ", a.scalar_type(), " and ",
              b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), "gate_half: a is on ", a.device(), " but b is on ", b.device());
  return a * b;
}

// out = a * b; each factor receives half of the output relevance:
// R_a = a * (g b / 2) = R_out / 2, R_b likewise.
class GateHalf : public torch::autograd::Function<GateHalf> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return gate_half_forward(a, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor half = grads[0] * 0.5;
    return {at::sum_to(half * saved[1], saved[0].sizes()), at::sum_to(half * saved[0], saved[1].sizes())};
  }
};

at::Tensor silu_identity_autograd(const at::Tensor& x) { return SiluIdentity::apply(x); }
at::Tensor gate_half_autograd(const at::Tensor& a, const at::Tensor& b) { return GateHalf::apply(a, b); }

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("silu_identity", TORCH_FN(silu_identity_forward));
  m.impl("gate_half", TORCH_FN(gate_half_forward));
}

TORCH_LIBRARY_IMPL(mamba_lrp, Autograd, m) {
  m.impl("silu_identity", TORCH_FN(silu_identity_autograd));
  m.impl("gate_half", TORCH_FN(gate_half_autograd));
}

}  // namespace rules
}  // namespace mamba_lrp
