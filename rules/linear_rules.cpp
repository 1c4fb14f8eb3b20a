// LRP rules on the linear maps (Linear, Conv1d, Conv2d): the gamma rule and the epsilon rule.
//
// The generalized (mixed-sign) gamma rule, as Zennit's Gamma
// and the official MambaLRP code define it. With x+ = max(x, 0), x- = min(x, 0),
// W_a = W + gamma W+, W_b = W + gamma W- (and b_a, b_b likewise):
//   for outputs z > 0:  z' = f(x+; W_a, b_a) + f(x-; W_b, 0)
//   for outputs z <= 0: z' = f(x+; W_b, b_b) + f(x-; W_a, 0)
// and the relevance R_out = z * g is redistributed in proportion to the terms of z':
//   s = g z / z'   (0 where z' = 0)
//   grad_x = [x >= 0] (f^T(s+; W_a) + f^T(s-; W_b)) + [x < 0] (f^T(s+; W_b) + f^T(s-; W_a))
// with s+ = s [z > 0], s- = s [z <= 0]. Then x * grad_x is the input relevance, which
// sums to sum(R_out) when the bias is zero. gamma = 0 gives W_a = W_b = W, z' = z and the
// plain gradient.
// Computed with two products and three transposed ones instead of four and four: f is
// linear, f(x+; W) + f(x-; W) = f(x; W) = z - b and W = W+ + W-, so with
// PQ = f(x+; W+) + f(x-; W-) and UV = f^T(s+; W+) + f^T(s-; W-):
//   z'(z > 0) = (z - b) + gamma PQ + b_a,   z'(z <= 0) = (1 + gamma)(z - b) - gamma PQ + b_b
//   grad_x = [x >= 0] (f^T(s; W) + gamma UV) + [x < 0] ((1 + gamma) f^T(s; W) - gamma UV)
//
// The epsilon rule: s = g z / (z + epsilon sign(z)) (sign(0) = +1), grad_x = f^T(s; W):
// relevance is absorbed by epsilon where z is small; epsilon = 0 is the plain gradient.
#include <torch/library.h>

#include <functional>

#include "csrc/io/errors.h"
#include "rules/rule_function.h"

namespace mamba_lrp {
namespace rules {
namespace {

// A layer linear in x: its forward, the transpose of its input Jacobian, and the axis of
// its output channels (where a bias broadcasts).
struct LinearLayer {
  std::function<at::Tensor(const at::Tensor& x, const at::Tensor& w, const OptTensor& b)> apply;
  std::function<at::Tensor(const at::Tensor& g, const at::Tensor& w)> transpose;
  int64_t channel_dim;
};

// b (channels) shaped to broadcast against the layer output z.
at::Tensor bias_as_output(const LinearLayer& f, const at::Tensor& b, const at::Tensor& z) {
  std::vector<int64_t> shape(z.dim(), 1);
  shape[f.channel_dim < 0 ? z.dim() + f.channel_dim : f.channel_dim] = b.size(0);
  return b.view(shape);
}

at::Tensor gamma_input_grad(const LinearLayer& f, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                            const at::Tensor& z, const at::Tensor& g, double gamma) {
  const at::Tensor x_pos = x.clamp_min(0), x_neg = x.clamp_max(0);
  const at::Tensor w_pos = w.clamp_min(0), w_neg = w.clamp_max(0);
  const at::Tensor fx = b ? z - bias_as_output(f, *b, z) : z;  // f(x; W)
  const at::Tensor pq = f.apply(x_pos, w_pos, c10::nullopt) + f.apply(x_neg, w_neg, c10::nullopt);
  at::Tensor zp_pos = fx + gamma * pq, zp_neg = (1 + gamma) * fx - gamma * pq;
  if (b) {
    zp_pos = zp_pos + bias_as_output(f, *b + gamma * b->clamp_min(0), z);
    zp_neg = zp_neg + bias_as_output(f, *b + gamma * b->clamp_max(0), z);
  }
  const at::Tensor positive = z > 0;
  const at::Tensor zp = at::where(positive, zp_pos, zp_neg);
  const at::Tensor nonzero = zp != 0;
  const at::Tensor s = at::where(nonzero, g * z / at::where(nonzero, zp, at::ones_like(zp)), at::zeros_like(zp));
  const at::Tensor s_pos = s * positive, s_neg = s - s_pos;
  const at::Tensor ts = f.transpose(s, w);
  const at::Tensor uv = f.transpose(s_pos, w_pos) + f.transpose(s_neg, w_neg);
  return at::where(x >= 0, ts + gamma * uv, (1 + gamma) * ts - gamma * uv);
}

at::Tensor epsilon_input_grad(const LinearLayer& f, const at::Tensor& w, const at::Tensor& z, const at::Tensor& g,
                              double epsilon) {
  const at::Tensor sign = at::where(z >= 0, at::ones_like(z), -at::ones_like(z));
  const at::Tensor denom = z + epsilon * sign;
  const at::Tensor nonzero = denom != 0;
  const at::Tensor s = at::where(nonzero, g * z / at::where(nonzero, denom, at::ones_like(denom)), at::zeros_like(z));
  return f.transpose(s, w);
}

enum class RuleKind { kGamma, kEpsilon };

const char* param_name(RuleKind k) { return k == RuleKind::kGamma ? "gamma" : "epsilon"; }

void check_rule_param(const char* op, RuleKind kind, double value) {
  TORCH_CHECK(std::isfinite(value) && value >= 0, op, ": ", param_name(kind), " must be finite and >= 0, got ", value);
}

at::Tensor rule_input_grad(RuleKind kind, const LinearLayer& f, const at::Tensor& x, const at::Tensor& w,
                           const OptTensor& b, const at::Tensor& z, const at::Tensor& g, double value) {
  return kind == RuleKind::kGamma ? gamma_input_grad(f, x, w, b, z, g, value) : epsilon_input_grad(f, w, z, g, value);
}

void check_params(const char* op, const at::Tensor& x, const at::Tensor& w, const OptTensor& b) {
  TORCH_CHECK(x.is_floating_point(), op, ": x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.device() == x.device(), op,
              ": weight must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ",
              w.scalar_type(), ", ", w.device());
  if (b) {
    TORCH_CHECK(b->dim() == 1 && b->size(0) == w.size(0), op, ": bias must have shape (", w.size(0),
                ") (weight's first dimension), got ", io::shape_str(*b));
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(), op,
                ": bias must have x's dtype and device");
  }
}

// ---- Linear -----------------------------------------------------------------------------

void check_linear(const char* op, RuleKind kind, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                  double value) {
  TORCH_CHECK(w.dim() == 2, op, ": weight must have shape (out_features, in_features), got ", io::shape_str(w));
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), op, ": x's last dimension must be in_features = ", w.size(1),
              ", got x ", io::shape_str(x));
  check_params(op, x, w, b);
  check_rule_param(op, kind, value);
}

LinearLayer linear_layer() {
  return {[](const at::Tensor& x, const at::Tensor& w, const OptTensor& b) { return at::linear(x, w, b); },
          [](const at::Tensor& g, const at::Tensor& w) { return g.matmul(w); }, -1};
}

template <RuleKind kKind>
at::Tensor linear_rule_forward(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, double value) {
  check_linear(kKind == RuleKind::kGamma ? "linear_gamma" : "linear_epsilon", kKind, x, w, b, value);
  return at::linear(x, w, b);
}

// ---- Convolutions -------------------------------------------------------------------------

struct ConvGeometry {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
};

LinearLayer conv_layer(const ConvGeometry& geo, const at::Tensor& x) {
  return {[geo](const at::Tensor& xi, const at::Tensor& w, const OptTensor& b) {
            return at::convolution(xi, w, b, geo.stride, geo.padding, geo.dilation, false,
                                   std::vector<int64_t>(geo.stride.size(), 0), geo.groups);
          },
          [geo, x](const at::Tensor& g, const at::Tensor& w) {
            return std::get<0>(at::convolution_backward(g, x, w, c10::nullopt, geo.stride, geo.padding, geo.dilation,
                                                        false, std::vector<int64_t>(geo.stride.size(), 0),
                                                        geo.groups, {true, false, false}));
          },
          1};
}

void check_conv(const char* op, RuleKind kind, int64_t spatial, const at::Tensor& x, const at::Tensor& w,
                const OptTensor& b, const ConvGeometry& geo, double value) {
  TORCH_CHECK(x.dim() == spatial + 2, op, ": x must have shape (batch, channels, ", spatial == 1 ? "length" : "H, W",
              "), got ", io::shape_str(x));
  TORCH_CHECK(w.dim() == spatial + 2, op, ": weight must have shape (out_channels, in_channels / groups, ",
              spatial == 1 ? "kernel" : "kH, kW", "), got ", io::shape_str(w));
  TORCH_CHECK(geo.groups >= 1 && x.size(1) % geo.groups == 0 && w.size(0) % geo.groups == 0 &&
                  w.size(1) * geo.groups == x.size(1),
              op, ": groups = ", geo.groups, " does not fit x ", io::shape_str(x), " and weight ", io::shape_str(w));
  check_params(op, x, w, b);
  check_rule_param(op, kind, value);
}

const char* conv_op_name(RuleKind kind, int64_t spatial) {
  if (kind == RuleKind::kGamma) return spatial == 1 ? "conv1d_gamma" : "conv2d_gamma";
  return spatial == 1 ? "conv1d_epsilon" : "conv2d_epsilon";
}

ConvGeometry geometry(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return {stride.vec(), padding.vec(), dilation.vec(), groups};
}

template <RuleKind kKind, int64_t kSpatial>
at::Tensor conv_rule_forward(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, double value) {
  const ConvGeometry geo = geometry(stride, padding, dilation, groups);
  check_conv(conv_op_name(kKind, kSpatial), kKind, kSpatial, x, w, b, geo, value);
  return conv_layer(geo, x).apply(x, w, b);
}

// ---- Autograd ---------------------------------------------------------------------------------

template <RuleKind kKind>
class LinearRule : public torch::autograd::Function<LinearRule<kKind>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                            double value) {
    at::Tensor z = at::linear(x, w, b);
    ctx->save_for_backward({x, w, value_or_undefined(b), z});
    ctx->saved_data["value"] = value;
    return z;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const double value = ctx->saved_data["value"].toDouble();
    return {rule_input_grad(kKind, linear_layer(), s[0], s[1], opt(s[2]), s[3], grads[0], value), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

template <RuleKind kKind, int64_t kSpatial>
class ConvRule : public torch::autograd::Function<ConvRule<kKind, kSpatial>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            double value) {
    const ConvGeometry geo = geometry(stride, padding, dilation, groups);
    at::Tensor z = conv_layer(geo, x).apply(x, w, b);
    ctx->save_for_backward({x, w, value_or_undefined(b), z});
    ctx->saved_data["stride"] = geo.stride;
    ctx->saved_data["padding"] = geo.padding;
    ctx->saved_data["dilation"] = geo.dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["value"] = value;
    return z;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    ConvGeometry geo{ctx->saved_data["stride"].toIntVector(), ctx->saved_data["padding"].toIntVector(),
                     ctx->saved_data["dilation"].toIntVector(), ctx->saved_data["groups"].toInt()};
    const double value = ctx->saved_data["value"].toDouble();
    return {rule_input_grad(kKind, conv_layer(geo, s[0]), s[0], s[1], opt(s[2]), s[3], grads[0], value),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

template <RuleKind kKind>
at::Tensor linear_rule_autograd(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, double value) {
  check_linear(kKind == RuleKind::kGamma ? "linear_gamma" : "linear_epsilon", kKind, x, w, b, value);
  return LinearRule<kKind>::apply(x, w, b, value);
}

template <RuleKind kKind, int64_t kSpatial>
at::Tensor conv_rule_autograd(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, double value) {
  check_conv(conv_op_name(kKind, kSpatial), kKind, kSpatial, x, w, b, geometry(stride, padding, dilation, groups),
             value);
  return ConvRule<kKind, kSpatial>::apply(x, w, b, stride, padding, dilation, groups, value);
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("linear_gamma", TORCH_FN(linear_rule_forward<RuleKind::kGamma>));
  m.impl("conv1d_gamma", TORCH_FN((conv_rule_forward<RuleKind::kGamma, 1>)));
  m.impl("conv2d_gamma", TORCH_FN((conv_rule_forward<RuleKind::kGamma, 2>)));
  m.impl("linear_epsilon", TORCH_FN(linear_rule_forward<RuleKind::kEpsilon>));
  m.impl("conv1d_epsilon", TORCH_FN((conv_rule_forward<RuleKind::kEpsilon, 1>)));
  m.impl("conv2d_epsilon", TORCH_FN((conv_rule_forward<RuleKind::kEpsilon, 2>)));
}

TORCH_LIBRARY_IMPL(mamba_lrp, Autograd, m) {
  m.impl("linear_gamma", TORCH_FN(linear_rule_autograd<RuleKind::kGamma>));
  m.impl("conv1d_gamma", TORCH_FN((conv_rule_autograd<RuleKind::kGamma, 1>)));
  m.impl("conv2d_gamma", TORCH_FN((conv_rule_autograd<RuleKind::kGamma, 2>)));
  m.impl("linear_epsilon", TORCH_FN(linear_rule_autograd<RuleKind::kEpsilon>));
  m.impl("conv1d_epsilon", TORCH_FN((conv_rule_autograd<RuleKind::kEpsilon, 1>)));
  m.impl("conv2d_epsilon", TORCH_FN((conv_rule_autograd<RuleKind::kEpsilon, 2>)));
}

}  // namespace rules
}  // namespace mamba_lrp
