#include "models/channel_layout.h"

#include <torch/autograd.h>

namespace mamba_lrp {

namespace {
// A frozen weight (out, in) as a (B, out, in) batch of stride 0: batched products then have
// the layout asked for, whatever matmul's folding heuristics (which differ with grad mode)
// would pick, and no transposing copy. A trained weight goes through matmul: its gradient
// through the broadcast would be a (B, out, in) temporary.
bool broadcast_weight(const at::Tensor& x, const at::Tensor& weight) { return x.dim() == 3 && !weight.requires_grad(); }
at::Tensor batch_of(const at::Tensor& weight, int64_t B) { return weight.unsqueeze(0).expand({B, weight.size(0), weight.size(1)}); }

// W x^T for x (B, L, in) and a frozen W: the output (B, out, L) dense for conv and scan, and
// x's gradient g^T W computed token-major (B, L, in), dense like x: the residual stream's
// gradient then never mixes layouts (a transposed gradient made every norm backward and
// residual addition a strided pass).
class TokensToChannels : public torch::autograd::Function<TokensToChannels> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight) {
    ctx->saved_data["weight"] = weight;
    return at::bmm(batch_of(weight, x.size(0)), x.transpose(1, 2));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor w = ctx->saved_data["weight"].toTensor();
    const at::Tensor& g = grads[0];  // (B, out, L)
    return {at::bmm(g.transpose(1, 2), batch_of(w, g.size(0))), at::Tensor()};
  }
};
}  // namespace

at::Tensor linear_to_channels(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const rules::LayerRule& rule) {
  if (rule.kind != rules::LayerRule::Kind::kLrp0) return rules::linear_with_rule(x, weight, bias, rule).transpose(-1, -2);
  at::Tensor out = broadcast_weight(x, weight) ? TokensToChannels::apply(x, weight)
                                               : at::matmul(weight, x.transpose(-1, -2));  // (B, out, L)
  return bias ? out + bias->unsqueeze(-1) : out;
}
at::Tensor linear_on_channels(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const rules::LayerRule& rule) {
  if (rule.kind != rules::LayerRule::Kind::kLrp0)
    return rules::linear_with_rule(x.transpose(-1, -2), weight, bias, rule).transpose(-1, -2);
  at::Tensor out = broadcast_weight(x, weight) ? at::bmm(batch_of(weight, x.size(0)), x) : at::matmul(weight, x);
  return bias ? out + bias->unsqueeze(-1) : out;  // (B, out, L)
}
at::Tensor linear_from_channels(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                                const rules::LayerRule& rule) {
  if (rule.kind != rules::LayerRule::Kind::kLrp0) return rules::linear_with_rule(x.transpose(-1, -2), weight, bias, rule);
  // Channel-major product, so that x's gradient comes back channel-major (dense for the scan).
  return linear_on_channels(x, weight, bias, rule).transpose(-1, -2);  // (B, L, out) view
}

}  // namespace mamba_lrp
