// The baseline explainers for Mamba language models (issue 6): SmoothGrad, Integrated
// Gradients, random relevance, and the hidden-attention methods (attention rollout and
// MambaAttr, csrc/app/explain/hidden_attention.h). explain() (csrc/app/explain/explain.h) validates
// the input and dispatches here; these functions expect checked arguments.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "csrc/app/explain/explain.h"
#include "csrc/app/explain/explain_vim.h"

namespace mamba_lrp {

// smoothgrad, ig, attnroll, mambaattr, random.
bool is_baseline_method(const std::string& method);

// The integration nodes and weights of IG on [0, 1] for `method`: "gausslegendre"
// (Captum's default), "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle".
// Weights sum to 1. io::InputError on an unknown method or steps < 1 (< 2 for the trapezoid).
std::pair<std::vector<double>, std::vector<double>> ig_nodes(const std::string& method, int64_t steps);

// ids (B, L) int64 in the vocabulary; mask (B, L) int64 0/1 or undefined; pos in [0, L).
// The model must be in the standard propagation mode (explain() sees to it).
Explanation explain_baseline(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask, int64_t pos,
                             const ExplainOptions& options);

// The target logits (n) of inputs x (n, L, H) that belong to data rows `rows` (n).
using LogitFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& rows)>;

// The model-independent parts, on embeddings (B, L, H) -> relevance (B, L):
// SmoothGrad (Gradient x Input at each noisy copy, averaged), Integrated Gradients from
// `base` (B, L, H), and seeded uniform [0, 1) relevance (on the CPU).
at::Tensor smoothgrad_relevance(const at::Tensor& embeds, const LogitFn& logit, const ExplainOptions& options);
at::Tensor ig_relevance(const at::Tensor& embeds, const at::Tensor& base, const LogitFn& logit,
                        const ExplainOptions& options);
// Row b's values come from row_seed(seed, first_row + b) (ExplainOptions::seed).
at::Tensor random_relevance(int64_t batch, int64_t length, at::ScalarType dtype, uint64_t seed, int64_t first_row);
// The seed of data row `row`'s generator: a SplitMix64 mix of both, so that (seed, row) and
// (seed + 1, row - 1) draw different streams (a plain seed + row would not).
uint64_t row_seed(uint64_t seed, int64_t row);

// The baselines for Vision Mamba, on the token sequence the first block sees (token_relevance
// as explain_vim; patch_relevance without the cls token; no pixels). The IG baseline is zero
// tokens or options.ig_baseline ((D) or (B, T, D)). attnroll / mambaattr: per layer both
// scan directions' hidden attention (csrc/app/explain/hidden_attention.h), the rollout row the
// classifier reads. targets as VimExplainOptions::targets.
bool is_vim_baseline_method(const std::string& method);
VimExplanation explain_vim_baseline(VisionMamba& model, const at::Tensor& pixel_values,
                                    const std::vector<int64_t>& targets, const ExplainOptions& options);

}  // namespace mamba_lrp
