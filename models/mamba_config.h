// Configuration of a Mamba language model: Hugging Face's MambaConfig keys, one TORCH_ARG
// per key, with HF's defaults for missing keys. Also reads the original state-spaces
// config.json (d_model, n_layer, ssm_cfg, ...).
#pragma once
#include <torch/arg.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace mamba_lrp {

struct MambaConfig {
  // `origin` names the file in error messages (io::InputError).
  static MambaConfig from_json(const nlohmann::json& j, const std::string& origin);
  static MambaConfig from_file(const std::string& path);
  void validate(const std::string& origin) const;

  TORCH_ARG(int64_t, vocab_size) = 50280;
  TORCH_ARG(int64_t, hidden_size) = 768;
  TORCH_ARG(int64_t, state_size) = 16;
  TORCH_ARG(int64_t, num_hidden_layers) = 32;
  TORCH_ARG(double, layer_norm_epsilon) = 1e-5;
  TORCH_ARG(int64_t, expand) = 2;
  TORCH_ARG(int64_t, conv_kernel) = 4;
  TORCH_ARG(int64_t, intermediate_size) = 1536;  // expand * hidden_size
  TORCH_ARG(int64_t, time_step_rank) = 48;       // "auto": ceil(hidden_size / 16)
  TORCH_ARG(bool, use_bias) = false;             // in_proj / out_proj bias
  TORCH_ARG(bool, use_conv_bias) = true;
  TORCH_ARG(bool, residual_in_fp32) = true;
  TORCH_ARG(bool, tie_word_embeddings) = true;
  TORCH_ARG(std::string, hidden_act) = "silu";
  // Rows of the output head: vocab_size for a language model, the number of classes for a
  // classifier (the paper's SST-2 models); set by the loader from lm_head.weight.
  TORCH_ARG(int64_t, num_outputs) = 50280;
  // The checkpoint uses the state-spaces tensor names (backbone.embedding.weight).
  TORCH_ARG(bool, state_spaces_names) = false;
};

}  // namespace mamba_lrp
