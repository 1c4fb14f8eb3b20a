#include "csrc/app/explain/explain_vim.h"

#include <torch/autograd.h>

#include <algorithm>
#include <memory>
#include <sstream>

#include "csrc/io/errors.h"
#include "csrc/app/explain/scoped.h"
#include "csrc/app/explain/targets.h"

namespace mamba_lrp {

rules::Composite vim_default_composite() {
  rules::Composite c;
  rules::LayerRule gamma;
  gamma.kind = rules::LayerRule::Kind::kGamma;
  gamma.gamma = 0.25;
  c.set("patch_embed", gamma);
  return c;
}

rules::Composite vim_composite_for_method(const std::string& method) {
  if (method == "gi" || method == "standard" || method == "lrp-ln") return rules::Composite();
  return vim_default_composite();
}

bool is_vim_method(const std::string& method) {
  static const std::vector<std::string> names = {"mambalrp", "gi", "standard", "lrp-ln",
                                                 "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate"};
  return std::find(names.begin(), names.end(), method) != names.end();
}

VimExplanation VimExplanation::cpu() const {
  VimExplanation e = *this;
  for (at::Tensor* t : {&e.token_relevance, &e.patch_relevance, &e.pixel_relevance, &e.constant_relevance, &e.logits,
                        &e.class_logits, &e.targets})
    if (t->defined()) *t = t->cpu();
  return e;
}

at::Tensor check_pixel_values(const VimConfig& c, const at::Tensor& pixel_values, at::ScalarType dtype,
                              const std::string& what) {
  if (!pixel_values.defined() || (pixel_values.dim() != 3 && pixel_values.dim() != 4))
    throw io::InputError(what + " must have shape (B, C, H, W) or (C, H, W)" +
                     (pixel_values.defined() ? ", got " + io::shape_str(pixel_values) : std::string()));
  if (!at::isFloatingType(pixel_values.scalar_type())) throw io::InputError(what + " must be floating point");
  at::Tensor x = pixel_values.dim() == 3 ? pixel_values.unsqueeze(0) : pixel_values;  // (B, C, H, W)
  if (x.size(0) < 1) throw io::InputError(what + " is empty: need at least one image");
  if (x.size(1) != c.in_chans() || x.size(2) != c.img_size() || x.size(3) != c.img_size()) {
    std::ostringstream want;
    want << "(B, " << c.in_chans() << ", " << c.img_size() << ", " << c.img_size() << ")";
    throw io::InputError(what + ": the model takes images of shape " + want.str() + ", got " + io::shape_str(pixel_values));
  }
  x = x.to(dtype).contiguous();
  if (!at::isfinite(x).all().item<bool>()) throw io::InputError(what + " holds non-finite values (NaN or Inf)");
  return x;
}

VimExplanation explain_vim(VisionMamba& model, const at::Tensor& pixel_values, const VimExplainOptions& options) {
  if (!is_vim_method(options.method))
    throw io::InputError("explain_vim takes the LRP methods (mambalrp, gi, lrp-ln and the ablations), not '" +
                     options.method + "'; the baselines go through explain_vim_baseline");
  const rules::Propagation mode = rules::parse_propagation(options.method == "gi" ? "standard" : options.method);
  const VimConfig& cfg = model->config();
  if (!model->head) throw io::InputError("the model has no classification head (num_classes is 0): nothing to explain");
  const at::Tensor& weight = model->patch_embed->proj->weight;  // its dtype and device are the model's
  const at::ScalarType dtype = weight.scalar_type();
  const at::Tensor x = check_pixel_values(cfg, pixel_values, dtype).to(weight.device());  // (B, C, H, W)
  const int64_t batch = x.size(0);
  check_targets(options.targets, batch, cfg.num_classes());

  const rules::Composite composite = options.composite ? *options.composite : vim_composite_for_method(options.method);
  const bool recompute = recompute_ssm_branches(options.recompute, cfg.num_tokens(), cfg.d_inner(),
                                                cfg.depth() * (cfg.bidirectional() ? 2 : 1), dtype);
  ScopedPropagation<VisionMamba> scoped_mode(model, mode, composite, recompute);
  std::unique_ptr<ScopedZero> zero;
  if (options.zero_bias) zero = std::make_unique<ScopedZero>(model->biases());

  torch::AutoGradMode grad_mode(true);
  at::Tensor input = x.detach().clone();
  at::Tensor e;  // (B, T, D)
  if (options.pixels) {
    input.set_requires_grad(true);
    e = model->tokens(input);
  } else {
    {
      torch::NoGradGuard g;
      e = model->tokens(input);
    }
    e.set_requires_grad(true);
  }
  at::Tensor logits = model->forward_tokens(e);  // (B, classes)

  const at::Tensor targets = pick_targets(logits, options.targets);  // (B)
  at::Tensor f = logits.gather(1, targets.unsqueeze(1)).squeeze(1);  // (B)
  // Rows are independent, so one backward of the sum explains every row at once.
  std::vector<at::Tensor> wrt = {e};
  if (options.pixels) wrt.push_back(input);
  const auto grads = torch::autograd::grad({f.sum()}, wrt);

  torch::NoGradGuard g;
  VimExplanation out;
  const at::Tensor de = grads[0];                              // (B, T, D)
  out.token_relevance = (e.detach() * de).sum(-1);             // (B, T)
  out.cls_position = cfg.cls_position();
  at::Tensor patches = out.token_relevance;                    // (B, P)
  if (out.cls_position >= 0)
    patches = at::cat({patches.narrow(1, 0, out.cls_position),
                       patches.narrow(1, out.cls_position + 1, patches.size(1) - out.cls_position - 1)}, 1);
  out.patch_relevance = patches.reshape({batch, cfg.grid(), cfg.grid()});  // (B, rows, cols)
  if (options.pixels) out.pixel_relevance = (input.detach() * grads[1]).sum(1);  // (B, H, W)
  at::Tensor constant = at::zeros({batch}, de.options());
  if (model->pos_embed.defined()) constant = constant + (model->pos_embed * de).sum({1, 2});
  if (out.cls_position >= 0) constant = constant + (model->cls_token.squeeze(1) * de.select(1, out.cls_position)).sum(-1);
  out.constant_relevance = constant;
  out.logits = f.detach();
  out.class_logits = logits.detach();
  out.targets = targets;
  return out;
}

}  // namespace mamba_lrp
