// Writing a trained model as a model directory (DESIGN.md §4) that load_mamba_lm /
// load_vision_mamba and `mamba-lrp explain` read back.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mamba_lrp {
namespace train {

// Creates `dir` if needed and writes config.json (`config` as given), model.safetensors
// (the tensors under their names, in their dtype, metadata format "pt") and, when
// `tokenizer_path` is not empty, a copy of it as tokenizer.json. io::InputError when a file
// cannot be written.
void save_model_dir(const std::string& dir, const nlohmann::json& config,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& tokenizer_path);

}  // namespace train
}  // namespace mamba_lrp
