// What a model's forward pass needs besides its input: the rules (rules/propagation.h) and
// the model-side switches of how its SSM branches record for the backward.
#pragma once
#include <vector>

#include "rules/propagation.h"

namespace mamba_lrp {

struct SsmTrace;  // models/ssm_branch.h

struct PropagationContext {
  rules::RuleSet rules;
  rules::Composite composite;
  // Under every MambaLRP rule: keep only each SSM branch's inputs for the backward and
  // recompute the rest there (models/ssm_branch.h; Mamba-2: models/mamba2.h,
  // mamba2_mixer_explanation_node). Same values; less memory, more time.
  bool recompute = false;
  // When set, every SSM branch appends what its scan saw, in call order (the hidden-attention
  // explainers, csrc/app/explain/hidden_attention.h).
  std::vector<SsmTrace>* trace = nullptr;
};

}  // namespace mamba_lrp
