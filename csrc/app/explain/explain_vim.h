// The explain API for Vision Mamba classifiers: one backward pass of the model in the
// chosen propagation mode; relevance read at the token sequence the first block sees
// (patch embeddings with the cls token inserted and pos_embed added, DESIGN.md §1) and,
// through the patch embedding with its composite rule, at the pixels.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <string>
#include <vector>

#include "models/vision_mamba.h"
#include "rules/propagation.h"

namespace mamba_lrp {

// The MambaLRP-Vim default composite (configs/composites/mambalrp-vim.json): the
// generalized γ-rule (γ = 0.25) on the patch embedding, LRP-0 elsewhere, as the official
// MambaLRP code does by default. Used for mambalrp and its three ablations when no composite
// is given; gi and lrp-ln use LRP-0 everywhere (no rule at all / only the norm rule).
rules::Composite vim_default_composite();
rules::Composite vim_composite_for_method(const std::string& method);

struct VimExplainOptions {
  // "mambalrp" (default), "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate".
  std::string method = "mambalrp";
  // One target class per row, or one for all rows, or none: the argmax per row.
  std::vector<int64_t> targets;
  // Set every bias to zero for the explanation (the conservation check); restored after.
  bool zero_bias = false;
  // The composite; none: vim_composite_for_method(method).
  c10::optional<rules::Composite> composite;
  // Also propagate through the patch embedding down to the pixels.
  bool pixels = true;
  // Memory of the MambaLRP backward, as ExplainOptions::recompute ("auto", "on", "off").
  std::string recompute = "auto";
};

struct VimExplanation {
  at::Tensor token_relevance;     // (B, T): sum over the embedding dim of e * df/de, sequence order, cls included
  at::Tensor patch_relevance;     // (B, rows, cols): token_relevance without the cls token, as the patch grid
  at::Tensor pixel_relevance;     // (B, H, W): sum over channels of x * df/dx; undefined without `pixels`
  at::Tensor constant_relevance;  // (B): the share of cls_token and pos_embed (learned inputs, not pixels)
  at::Tensor logits;              // (B): the explained logit f per row
  at::Tensor class_logits;        // (B, classes): the model's output
  at::Tensor targets;             // (B) int64
  int64_t cls_position = -1;      // index of the cls token in the sequence; -1 without one
  // The same explanation with every tensor on the CPU (where the outputs are written).
  VimExplanation cpu() const;
};

bool is_vim_method(const std::string& method);

// Checks pixel_values against the model: floating, (B, C, H, W) or (C, H, W) with the
// model's channels and image size, finite. Returns (B, C, H, W) in the model's dtype.
// `what` names the input in messages. io::InputError otherwise.
at::Tensor check_pixel_values(const VimConfig& config, const at::Tensor& pixel_values, at::ScalarType dtype,
                              const std::string& what = "pixel_values");

// pixel_values (B, C, H, W) or (C, H, W), on any device: moved to the model's
// (model->to(device)), where the explanation's tensors are returned. Bad inputs, targets or
// methods raise io::InputError.
VimExplanation explain_vim(VisionMamba& model, const at::Tensor& pixel_values, const VimExplainOptions& options);

}  // namespace mamba_lrp
