// Greedy generation with a Mamba language model and the explanation of every generated
// token (`mamba-lrp generate`, DESIGN.md §5): which context tokens each prediction rests on,
// and how far back they lie.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "csrc/app/explain/explain.h"
#include "models/mamba.h"

namespace mamba_lrp {

struct GenerateOptions {
  int64_t max_new_tokens = 16;  // >= 0
  int64_t eos_id = -1;          // stop after generating this id (< 0: never)
};

struct Generation {
  std::vector<int64_t> prompt_ids, generated_ids;
  at::Tensor prompt_mask;  // (P) int64 0/1, or undefined (every prompt token counts)
  at::Tensor step_logits;  // (G, V): the logits each generated token was picked from
};

// The id of the largest value of logits (V), ties to the lowest id.
int64_t greedy_pick(const at::Tensor& logits);

// Greedy decoding: one forward over the prompt (P >= 1 ids, mask (P) of 0/1 or undefined,
// at least one 1), then the recurrent step per new token (conv window and SSM state carried,
// O(1) per token). Stops after max_new_tokens or after eos_id. io::InputError on bad input.
Generation generate_greedy(MambaForCausalLM& model, const std::vector<int64_t>& prompt_ids,
                           const at::Tensor& prompt_mask, const GenerateOptions& options);

// The explanation of generated token k: its logit at position P - 1 + k of prompt +
// generated, relevance over positions 0..P - 1 + k (0 at masked prompt positions).
struct TokenExplanation {
  int64_t target = 0, position = 0;
  double logit = 0;
  std::vector<double> relevance;
  double relevance_sum = 0;
  // How far back the relevance lies: the distance d = position - i of context token i,
  // weighted by |R_i| / sum |R|; the weighted median and 90th percentile (the smallest d
  // whose cumulative weight reaches 0.5 / 0.9); -1 when every R_i is 0.
  int64_t distance_median = -1, distance_p90 = -1;
};

// Explains every generated token. MambaLRP with the default composite (LRP-0 on every
// linear layer) runs one forward over prompt + generated and one backward that carries one
// cotangent per generated token (csrc/app/generate/batched_lrp.h), Mamba-1 and Mamba-2; any
// other method (or a composite) explains each token with explain() of its prefix. Each entry equals explain()
// of prompt + generated[0..k) with target generated[k] at the last position.
std::vector<TokenExplanation> explain_generation(MambaForCausalLM& model, const Generation& generation,
                                                 const ExplainOptions& options);

// The weighted-distance quantiles of TokenExplanation for relevance over 0..position.
void set_distance_summary(TokenExplanation& e);

}  // namespace mamba_lrp
