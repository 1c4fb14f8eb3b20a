// The model_type of a model directory (DESIGN.md §4): what the explainers and the command
// line branch on.
#pragma once
#include <filesystem>
#include <string>

namespace mamba_lrp {

// config.json's "model_type" ("mamba", "mamba2", "vim"; "mamba" when the key is absent, as
// in the original state-spaces format; "mamba2" for mamba_ssm's configs with ssm_cfg.layer
// "Mamba2"). `model` is a directory, or a checkpoint file with
// config.json beside it. A missing or invalid config.json raises io::InputError.
std::string read_model_type(const std::filesystem::path& model);

}  // namespace mamba_lrp
