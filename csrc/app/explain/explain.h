// The explain API for Mamba language models: one backward pass of the model in the chosen
// propagation mode, relevance read at the embedding output (DESIGN.md §1).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "models/mamba.h"
#include "rules/propagation.h"

namespace mamba_lrp {

struct ExplainOptions {
  // "mambalrp" (default), "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate",
  // and the baselines of csrc/app/explain/methods.h: "smoothgrad", "ig", "attnroll", "mambaattr", "random".
  std::string method = "mambalrp";
  // One target per row, or one for all rows, or none: the argmax at the position.
  std::vector<int64_t> targets;
  // Position whose logit is explained; negative counts from the end (default: last).
  int64_t position = -1;
  // Set every bias to zero for the explanation (the conservation check); restored after.
  bool zero_bias = false;
  rules::Composite composite;  // the LRP methods only; the baselines use true gradients
  // Memory of the MambaLRP backward: "off" keeps what the SSM branches' backward reads (7
  // tensors of length x intermediate_size per layer; fastest); "on" keeps only their inputs
  // (2 tensors) and recomputes the rest, so the backward also runs the branches' conv,
  // dt_proj and scan forward again and takes longer; "auto" (default): "on" when "off"
  // would keep more than 2 GiB per batch row. Mamba-2 (models/mamba2.h,
  // mamba2_mixer_explanation_node): "off" keeps 3.2 such tensors per layer, "on" 1.7 and
  // recomputes z and the conv; "auto" turns it on above 1 GiB. Same relevance either way.
  std::string recompute = "auto";

  // smoothgrad: Gradient x Input averaged over `samples` noisy copies of the embeddings
  // (Captum's NoiseTunnel default nt_samples = 5); Gaussian noise of standard deviation
  // noise * (max - min of the row's embedding values) (SmoothGrad's "noise level";
  // Captum's default stdevs = 1.0 is absolute, which depends on the embedding scale).
  int64_t samples = 5;
  double noise = 0.15;
  // ig: `ig_steps` nodes (Captum's default n_steps = 50) of `ig_method` (Captum's default
  // "gausslegendre"; or riemann_trapezoid, riemann_left, riemann_right, riemann_middle) on
  // the straight path from the baseline embedding to the input; baseline undefined = zeros,
  // else (hidden) for every position or (batch, length, hidden).
  int64_t ig_steps = 50;
  std::string ig_method = "gausslegendre";
  at::Tensor ig_baseline;
  int64_t ig_baseline_token = -1;  // >= 0: the embedding of this token id is the baseline
  // random (uniform [0, 1)) and smoothgrad's noise: every row draws from its own CPU
  // generator, seeded by (seed, first_row + b) for row b of the input (row_seed in
  // methods.h), so a row's draws do not depend on which other rows share its batch, chunk
  // or process (distributed runs split the rows over processes).
  uint64_t seed = 0;
  // The index of the input's first row in the whole data set (chunks and ranks pass theirs).
  int64_t first_row = 0;
  // Rows per internal forward/backward for the sample-based methods (samples x batch rows)
  // and the attention methods.
  int64_t batch_size = 32;
};

struct Explanation {
  at::Tensor relevance;  // (B, L): sum over the hidden dim of e * df/de; 0 at padded positions
  at::Tensor logits;     // (B): the explained logit f per row
  at::Tensor targets;    // (B) int64
  at::Tensor positions;  // (B) int64, non-negative
  // The same explanation with every tensor on the CPU (where the outputs are written).
  Explanation cpu() const;
};

// The methods explain() accepts (every method name of DESIGN.md §5).
bool is_lm_method(const std::string& method);

// Whether explain() recomputes the SSM branches (ExplainOptions::recompute) for inputs of
// this length: the one place that decides, for explain() and for callers that prepare the
// process for it (the CLI's allocator setting).
bool explain_recomputes(MambaForCausalLM& model, int64_t length, const ExplainOptions& options);

// input_ids (B, L) or (L) int64; attention_mask (B, L) of 0/1 or undefined, on any device:
// they are moved to the model's (model->to(device) picks it), where the explanation's
// tensors are returned. Bad ids, targets, positions or methods raise io::InputError.
Explanation explain(MambaForCausalLM& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                    const ExplainOptions& options);

}  // namespace mamba_lrp
