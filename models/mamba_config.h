// Configuration of a Mamba language model: Hugging Face's MambaConfig keys, one TORCH_ARG
// per key, with HF's defaults for missing keys. Also reads the original state-spaces
// config.json (d_model, n_layer, ssm_cfg, ...). Mamba-2 (SSD, DESIGN.md §1b) is the same
// struct with mamba_version 2 and its own keys (models/mamba2_config.cpp): HF's
// Mamba2Config (model_type "mamba2") or mamba_ssm's config with ssm_cfg.layer "Mamba2".
#pragma once
#include <torch/arg.h>

#include <cstdint>
#include <limits>
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

  // ---- Mamba-2 (mamba_version 2): intermediate_size = num_heads * head_dim; state_size,
  // conv_kernel, use_bias, use_conv_bias as above; time_step_rank unused.
  TORCH_ARG(int64_t, mamba_version) = 1;
  TORCH_ARG(int64_t, num_heads) = 24;
  TORCH_ARG(int64_t, head_dim) = 64;
  TORCH_ARG(int64_t, n_groups) = 1;   // head h reads B, C of group h / (num_heads / n_groups)
  TORCH_ARG(int64_t, chunk_size) = 256;
  // Delta is clamped to [time_step_min_limit, time_step_max_limit] after the softplus
  // (HF's time_step_limit, mamba_ssm's dt_limit; default (0, inf): no clamp).
  TORCH_ARG(double, time_step_min_limit) = 0.0;
  TORCH_ARG(double, time_step_max_limit) = std::numeric_limits<double>::infinity();

 public:
  bool is_mamba2() const { return mamba_version_ == 2; }
  int64_t conv_dim() const { return intermediate_size_ + 2 * n_groups_ * state_size_; }  // Mamba-2: x, B, C
};

// The ranges every config key is checked against as it is read, before any arithmetic uses it
// (validate() checks the same ranges on a config built in code); both readers use them.
namespace config_limits {
constexpr int64_t kMaxVocab = int64_t(1) << 24, kMaxHidden = 1 << 16, kMaxState = 256, kMaxLayers = 1024,
                  kMaxConv = 64, kMaxExpand = 64, kMaxIntermediate = 1 << 18, kMaxRank = 1 << 16,
                  kMaxPadMultiple = 1 << 16, kMaxHeads = 1 << 14, kMaxHeadDim = 1 << 12, kMaxChunk = 1 << 16;
}  // namespace config_limits

// mamba_ssm's top-level keys, the same for Mamba-1 and Mamba-2 (models/mamba_config.cpp):
// d_model, n_layer, vocab_size rounded up to pad_vocab_size_multiple, rms_norm (true only),
// residual_in_fp32, tie_embeddings, norm_epsilon; and the state-spaces tensor names.
void read_mamba_ssm_top_level(const nlohmann::json& j, MambaConfig& c, const std::string& origin);

// The Mamba-2 readers (models/mamba2_config.cpp), called by MambaConfig::from_json.
MambaConfig mamba2_config_from_hf(const nlohmann::json& j, const std::string& origin);
MambaConfig mamba2_config_from_mamba_ssm(const nlohmann::json& j, const std::string& origin);
bool is_mamba2_json(const nlohmann::json& j);  // model_type "mamba2" or ssm_cfg.layer "Mamba2"
void validate_mamba2(const MambaConfig& c, const std::string& origin);

}  // namespace mamba_lrp
