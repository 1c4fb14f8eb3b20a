// What an explanation explains per batch row: the target (class or token id) whose logit is
// explained. Shared by the explainers of Mamba language models (explain.h, methods.h) and of
// Vision Mamba (explain_vim.h, methods.h).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace mamba_lrp {

// Targets given for `batch` rows of a model with `outputs` logits: none (the argmax per row),
// one for every row, or one per row, each in [0, outputs). io::InputError otherwise.
void check_targets(const std::vector<int64_t>& given, int64_t batch, int64_t outputs);

// One target per row, (B) int64 on the device of logits (B, outputs): the given ones (checked
// as check_targets does) or, when none are given, the argmax of each row.
at::Tensor pick_targets(const at::Tensor& logits, const std::vector<int64_t>& given);

}  // namespace mamba_lrp
