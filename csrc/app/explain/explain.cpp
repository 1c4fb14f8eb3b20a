#include "csrc/app/explain/explain.h"

#include <torch/autograd.h>

#include "csrc/io/errors.h"
#include "csrc/app/explain/methods.h"
#include "csrc/app/explain/scoped.h"
#include "csrc/app/explain/targets.h"

namespace mamba_lrp {

bool is_lm_method(const std::string& method) {
  static const std::vector<std::string> names = {"mambalrp",         "gi",           "standard",
                                                 "lrp-ln",           "mambalrp-no-silu", "mambalrp-no-ssm",
                                                 "mambalrp-no-gate"};
  return std::find(names.begin(), names.end(), method) != names.end() || is_baseline_method(method);
}

namespace {
at::Tensor cpu_or_undefined(const at::Tensor& t) { return t.defined() ? t.cpu() : t; }
}  // namespace

Explanation Explanation::cpu() const {
  return {cpu_or_undefined(relevance), cpu_or_undefined(logits), cpu_or_undefined(targets), cpu_or_undefined(positions)};
}

bool explain_recomputes(MambaForCausalLM& model, int64_t length, const ExplainOptions& options) {
  const MambaConfig& c = model->config();
  const double kept = c.is_mamba2() ? 3.2 : 7.0, limit = c.is_mamba2() ? 1.0 * (1 << 30) : 2.0 * (1 << 30);
  const bool wanted = recompute_ssm_branches(options.recompute, length, c.intermediate_size(), c.num_hidden_layers(),
                                             model->head_weight().scalar_type(), kept, limit);  // also checks the option
  return wanted && !is_baseline_method(options.method);
}

Explanation explain(MambaForCausalLM& model, const at::Tensor& input_ids_in, const at::Tensor& attention_mask,
                    const ExplainOptions& options) {
  if (!is_lm_method(options.method))
    throw io::InputError("unknown method '" + options.method + "' for Mamba language models");
  const bool baseline = is_baseline_method(options.method);
  const rules::Propagation mode =
      rules::parse_propagation(options.method == "gi" || baseline ? "standard" : options.method);

  if (!input_ids_in.defined() || (input_ids_in.dim() != 1 && input_ids_in.dim() != 2))
    throw io::InputError("input_ids must have shape (batch, length) or (length)");
  at::Tensor ids = input_ids_in.dim() == 1 ? input_ids_in.unsqueeze(0) : input_ids_in;  // (B, L)
  if (at::isFloatingType(ids.scalar_type()) || ids.scalar_type() == at::kBool)
    throw io::InputError("input_ids must be integers");
  // The inputs go where the model is (model->to(device)); the explanation stays there.
  const at::Device device = model->head_weight().device();
  ids = ids.to(device, at::kLong).contiguous();
  const int64_t batch = ids.size(0), L = ids.size(1);
  if (batch < 1 || L < 1) throw io::InputError("input_ids is empty: need at least one row and one token");
  const int64_t vocab = model->config().vocab_size();
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= vocab)
    throw io::InputError("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary [0, " +
                     std::to_string(vocab) + ")");
  at::Tensor mask;
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != ids.sizes())
      throw io::InputError("attention_mask must have the shape of input_ids (batch, length)");
    mask = attention_mask.to(device, at::kLong);
    if (((mask != 0) & (mask != 1)).any().item<bool>()) throw io::InputError("attention_mask must hold only 0 and 1");
  }
  const int64_t pos = options.position < 0 ? L + options.position : options.position;
  if (pos < 0 || pos >= L)
    throw io::InputError("position " + std::to_string(options.position) + " is out of range for length " +
                     std::to_string(L));
  check_targets(options.targets, batch, model->config().num_outputs());

  const bool recompute = explain_recomputes(model, L, options);
  ScopedPropagation<MambaForCausalLM> scoped_mode(model, mode, baseline ? rules::Composite() : options.composite, recompute);
  std::unique_ptr<ScopedZero> zero;
  if (options.zero_bias) zero = std::make_unique<ScopedZero>(model->biases());
  if (baseline) return explain_baseline(model, ids, mask, pos, options);

  torch::AutoGradMode grad_mode(true);
  at::Tensor embeds;
  {
    torch::NoGradGuard g;
    embeds = model->embed(ids);  // (B, L, H)
  }
  embeds.set_requires_grad(true);
  const at::Tensor mask_f = mask.defined() ? mask.to(embeds.scalar_type()) : at::Tensor();
  at::Tensor hidden = model->hidden_states(embeds, mask_f);    // (B, L, H)
  at::Tensor at_pos = model->head(hidden.select(1, pos));      // (B, V): the head at the explained position only

  const at::Tensor targets = pick_targets(at_pos, options.targets);  // (B)
  at::Tensor f = at_pos.gather(1, targets.unsqueeze(1)).squeeze(1);  // (B)
  // Rows are independent, so one backward of the sum explains every row at once.
  const at::Tensor grad = torch::autograd::grad({f.sum()}, {embeds})[0];  // (B, L, H)

  torch::NoGradGuard g;
  Explanation e;
  e.relevance = (embeds.detach() * grad).sum(-1);  // (B, L)
  if (mask.defined()) e.relevance = e.relevance * mask.to(e.relevance.scalar_type());
  e.logits = f.detach();
  e.targets = targets;
  e.positions = at::full({batch}, pos, at::TensorOptions().dtype(at::kLong).device(device));
  return e;
}

}  // namespace mamba_lrp
