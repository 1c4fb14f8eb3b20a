// The baseline explainers for Mamba language models (issue 6): SmoothGrad, Integrated
// Gradients, random relevance, and the hidden-attention methods (attention rollout and
// MambaAttr, csrc/explain/hidden_attention.h). explain() (csrc/explain/explain.h) validates
// the input and dispatches here; these functions expect checked arguments.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "csrc/explain/explain.h"

namespace mamba_lrp {

// smoothgrad, ig, attnroll, mambaattr, random.
bool is_baseline_method(const std::string& method);

// The integration nodes and weights of IG on [0, 1] for `method`: "gausslegendre"
// (Captum's default), "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle".
// Weights sum to 1. InputError on an unknown method or steps < 1 (< 2 for the trapezoid).
std::pair<std::vector<double>, std::vector<double>> ig_nodes(const std::string& method, int64_t steps);

// ids (B, L) int64 in the vocabulary; mask (B, L) int64 0/1 or undefined; pos in [0, L).
// The model must be in the standard propagation mode (explain() sees to it).
Explanation explain_baseline(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask, int64_t pos,
                             const ExplainOptions& options);

// One target per row: the given ones (one for all, or one per row) or the argmax of logits_at (B, V).
at::Tensor pick_targets(const at::Tensor& logits_at, const std::vector<int64_t>& given);

}  // namespace mamba_lrp
