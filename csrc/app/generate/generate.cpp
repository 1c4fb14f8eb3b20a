#include "csrc/app/generate/generate.h"

#include <cmath>

#include "csrc/app/explain/scoped.h"
#include "csrc/app/generate/batched_lrp.h"
#include "csrc/io/errors.h"

namespace mamba_lrp {

int64_t greedy_pick(const at::Tensor& logits_in) {
  const at::Tensor logits = logits_in.to(at::kDouble).contiguous();
  const double* v = logits.data_ptr<double>();
  int64_t best = 0;
  for (int64_t i = 1; i < logits.numel(); ++i)
    if (v[i] > v[best]) best = i;  // strictly greater: a tie keeps the lower id
  return best;
}

Generation generate_greedy(MambaForCausalLM& model, const std::vector<int64_t>& prompt_ids,
                           const at::Tensor& prompt_mask, const GenerateOptions& options) {
  const int64_t P = static_cast<int64_t>(prompt_ids.size()), vocab = model->config().vocab_size();
  if (P == 0) throw io::InputError("the prompt is empty: greedy decoding needs at least one token to start from");
  if (options.max_new_tokens < 0)
    throw io::InputError("--max-new-tokens must be >= 0, got " + std::to_string(options.max_new_tokens));
  for (int64_t id : prompt_ids)
    if (id < 0 || id >= vocab)
      throw io::InputError("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  if (model->config().num_outputs() != vocab)
    throw io::InputError("generate needs a language model: this model's head has " +
                         std::to_string(model->config().num_outputs()) + " outputs, not the vocabulary's " +
                         std::to_string(vocab) + " (a classifier)");
  Generation gen;
  gen.prompt_ids = prompt_ids;
  at::Tensor mask;
  if (prompt_mask.defined()) {
    if (prompt_mask.dim() != 1 || prompt_mask.size(0) != P)
      throw io::InputError("the prompt's attention_mask must have the prompt's length " + std::to_string(P));
    gen.prompt_mask = prompt_mask.to(at::kLong).contiguous();
    if (((gen.prompt_mask != 0) & (gen.prompt_mask != 1)).any().item<bool>())
      throw io::InputError("attention_mask must hold only 0 and 1");
    if (gen.prompt_mask.sum().item<int64_t>() == 0)
      throw io::InputError("the attention_mask masks the whole prompt: nothing to start from");
    mask = gen.prompt_mask.unsqueeze(0);  // (1, P)
  }
  const int64_t G = options.max_new_tokens;
  // The inputs go where the model is (model->to(device)); the ids and logits come back to the CPU.
  const at::Device device = model->head_weight().device();
  if (mask.defined()) mask = mask.to(device);
  std::vector<at::Tensor> logits_per_step;
  if (G > 0) {
    std::vector<SsmState> state;
    at::Tensor logits = model->prefill(at::tensor(prompt_ids, at::kLong).unsqueeze(0).to(device), mask, state)[0].cpu();  // (V)
    while (true) {
      const int64_t next = greedy_pick(logits);
      logits_per_step.push_back(logits);
      gen.generated_ids.push_back(next);
      if (next == options.eos_id || static_cast<int64_t>(gen.generated_ids.size()) == G) break;
      logits = model->step(at::full({1}, next, at::TensorOptions(at::kLong).device(device)), state)[0].cpu();  // (V)
    }
  }
  gen.step_logits = logits_per_step.empty() ? at::empty({0, model->config().num_outputs()}, model->head_weight().options().device(at::kCPU))
                                            : at::stack(logits_per_step);  // (G, V)
  return gen;
}

void set_distance_summary(TokenExplanation& e) {
  double total = 0;
  for (double r : e.relevance) total += std::abs(r);
  e.distance_median = e.distance_p90 = -1;
  if (!(total > 0)) return;
  double cumulative = 0;
  for (int64_t d = 0; d <= e.position; ++d) {  // from the nearest context token backwards
    cumulative += std::abs(e.relevance[e.position - d]) / total;
    if (e.distance_median < 0 && cumulative >= 0.5) e.distance_median = d;
    if (e.distance_p90 < 0 && cumulative >= 0.9) e.distance_p90 = d;
  }
  // Rounding can leave the total a hair under 0.9 (or 0.5): the farthest token then.
  if (e.distance_median < 0) e.distance_median = e.position;
  if (e.distance_p90 < 0) e.distance_p90 = e.position;
}

std::vector<TokenExplanation> explain_generation(MambaForCausalLM& model, const Generation& gen,
                                                 const ExplainOptions& options) {
  const int64_t P = static_cast<int64_t>(gen.prompt_ids.size()), G = static_cast<int64_t>(gen.generated_ids.size());
  std::vector<TokenExplanation> out;
  if (G == 0) return out;
  // Prompt + generated without the last generated token, which no explained logit reads.
  std::vector<int64_t> context = gen.prompt_ids;
  context.insert(context.end(), gen.generated_ids.begin(), gen.generated_ids.end() - 1);
  const int64_t T = static_cast<int64_t>(context.size());
  const at::Device device = model->head_weight().device();  // where the model is; results come back to the CPU
  const at::Tensor ids = at::tensor(context, at::kLong).unsqueeze(0).to(device);  // (1, T)
  at::Tensor mask;                                                                 // (1, T) or undefined
  if (gen.prompt_mask.defined())
    mask = at::cat({gen.prompt_mask, at::ones({T - P}, at::kLong)}).unsqueeze(0).to(device);
  const at::Tensor positions = at::arange(P - 1, P - 1 + G, at::kLong).to(device);  // (G)
  const at::Tensor targets = at::tensor(gen.generated_ids, at::kLong).to(device);    // (G)

  at::Tensor relevance, logits;  // (G, T), (G)
  const bool default_composite = options.composite.empty();
  if (options.method == "mambalrp" && default_composite) {
    std::unique_ptr<ScopedZero> zero;
    if (options.zero_bias) zero = std::make_unique<ScopedZero>(model->biases());
    BatchedRelevance b = mambalrp_batched(model, ids, mask, positions, targets);
    relevance = b.relevance.to(at::kCPU, at::kDouble);
    logits = b.logits.to(at::kCPU, at::kDouble);
  } else {
    relevance = at::zeros({G, T}, at::kDouble);
    logits = at::zeros({G}, at::kDouble);
    for (int64_t k = 0; k < G; ++k) {
      const int64_t len = P + k;
      ExplainOptions one = options;
      one.targets = {gen.generated_ids[k]};
      one.position = -1;
      const Explanation e = explain(model, ids.narrow(1, 0, len), mask.defined() ? mask.narrow(1, 0, len) : mask, one);
      relevance[k].narrow(0, 0, len).copy_(e.relevance[0].cpu());
      logits[k] = e.logits[0].cpu().item<double>();
    }
  }
  relevance = relevance.contiguous();
  for (int64_t k = 0; k < G; ++k) {
    TokenExplanation e;
    e.target = gen.generated_ids[k];
    e.position = P - 1 + k;
    e.logit = logits[k].item<double>();
    const double* r = relevance[k].data_ptr<double>();
    e.relevance.assign(r, r + e.position + 1);
    for (double v : e.relevance) e.relevance_sum += v;
    set_distance_summary(e);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace mamba_lrp
