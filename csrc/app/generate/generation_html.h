// The page of `mamba-lrp generate --html`: the prompt and the generated text, then the
// matrix heatmap of the explanations, one row per generated token over the context
// positions it was predicted from (the picture of how far back the evidence reaches), each
// row with its logit, Σ R and the relevance-weighted distances.
#pragma once
#include <string>
#include <vector>

#include "csrc/app/generate/generate.h"

namespace mamba_lrp {

// tokens: the display text of every position of prompt + generated (P + G entries).
std::string generation_html(const std::string& title, const std::string& method, const Generation& generation,
                            const std::vector<TokenExplanation>& explanations,
                            const std::vector<std::string>& tokens);

}  // namespace mamba_lrp
