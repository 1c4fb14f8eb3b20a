// The explain API for Mamba language models: one backward pass of the model in the chosen
// propagation mode, relevance read at the embedding output (DESIGN.md §1).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <string>
#include <vector>

#include "models/mamba.h"
#include "rules/propagation.h"

namespace mamba_lrp {

struct ExplainOptions {
  // "mambalrp" (default), "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate".
  std::string method = "mambalrp";
  // One target per row, or one for all rows, or none: the argmax at the position.
  std::vector<int64_t> targets;
  // Position whose logit is explained; negative counts from the end (default: last).
  int64_t position = -1;
  // Set every bias to zero for the explanation (the conservation check); restored after.
  bool zero_bias = false;
  Composite composite;
};

struct Explanation {
  at::Tensor relevance;  // (B, L): sum over the hidden dim of e * df/de; 0 at padded positions
  at::Tensor logits;     // (B): the explained logit f per row
  at::Tensor targets;    // (B) int64
  at::Tensor positions;  // (B) int64, non-negative
};

// The methods explain() accepts; the other names of DESIGN.md §5 are "not available yet".
bool is_lm_method(const std::string& method);

// input_ids (B, L) or (L) int64; attention_mask (B, L) of 0/1 or undefined.
// Bad ids, targets, positions or methods raise InputError.
Explanation explain(MambaForCausalLM& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                    const ExplainOptions& options);

}  // namespace mamba_lrp
