// The Mamba-2 config readers (DESIGN.md §4): Hugging Face's Mamba2Config and mamba_ssm's
// own config.json with ssm_cfg.layer "Mamba2". Every key is range-checked as it is read.
#include <cmath>

#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"
#include "models/mamba_config.h"

namespace mamba_lrp {
namespace {

using namespace config_limits;

// [lo, hi] from a two-element array of numbers (HF's time_step_limit, mamba_ssm's dt_limit).
void read_limit(const nlohmann::json& j, const char* key, MambaConfig& c, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return;
  const nlohmann::json& v = j[key];
  if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
    io::throw_config_type_error(origin, key, v.dump(), "must be a pair of numbers [min, max]");
  c.time_step_min_limit(v[0].get<double>());
  c.time_step_max_limit(v[1].get<double>());
}

void refuse(bool condition, const std::string& origin, const std::string& what) {
  if (condition) throw io::InputError(origin + ": " + what);
}

}  // namespace

bool is_mamba2_json(const nlohmann::json& j) {
  if (!j.is_object()) return false;
  if (j.contains("model_type") && j["model_type"] == "mamba2") return true;
  return j.contains("ssm_cfg") && j["ssm_cfg"].is_object() && j["ssm_cfg"].contains("layer") &&
         j["ssm_cfg"]["layer"] == "Mamba2";
}

MambaConfig mamba2_config_from_hf(const nlohmann::json& j, const std::string& origin) {
  using io::config_int_in;
  MambaConfig c;
  c.mamba_version(2);
  c.vocab_size(config_int_in(j, "vocab_size", 32768, 1, kMaxVocab, origin));
  c.hidden_size(config_int_in(j, "hidden_size", 4096, 1, kMaxHidden, origin));
  c.state_size(config_int_in(j, "state_size", 128, 1, kMaxState, origin));
  c.num_hidden_layers(config_int_in(j, "num_hidden_layers", 64, 1, kMaxLayers, origin));
  c.layer_norm_epsilon(io::config_value<double>(j, "layer_norm_epsilon", 1e-5, origin));
  c.expand(config_int_in(j, "expand", 2, 1, kMaxExpand, origin));
  c.conv_kernel(config_int_in(j, "conv_kernel", 4, 1, kMaxConv, origin));
  c.n_groups(config_int_in(j, "n_groups", 8, 1, kMaxHeads, origin));
  c.num_heads(config_int_in(j, "num_heads", 128, 1, kMaxHeads, origin));
  c.head_dim(config_int_in(j, "head_dim", 64, 1, kMaxHeadDim, origin));
  c.chunk_size(config_int_in(j, "chunk_size", 256, 1, kMaxChunk, origin));
  c.use_bias(io::config_value<bool>(j, "use_bias", false, origin));
  c.use_conv_bias(io::config_value<bool>(j, "use_conv_bias", true, origin));
  c.residual_in_fp32(io::config_value<bool>(j, "residual_in_fp32", true, origin));
  c.tie_word_embeddings(io::config_value<bool>(j, "tie_word_embeddings", false, origin));
  c.hidden_act(io::config_value<std::string>(j, "hidden_act", "silu", origin));
  refuse(!io::config_value<bool>(j, "rms_norm", true, origin), origin,
         "rms_norm = false is not supported for Mamba-2 (the gated RMSNorm is part of the block)");
  read_limit(j, "time_step_limit", c, origin);
  // HF sizes the block by expand * hidden_size and splits it into num_heads x head_dim.
  refuse(c.num_heads() * c.head_dim() != c.expand() * c.hidden_size(), origin,
         "num_heads * head_dim (" + std::to_string(c.num_heads()) + " * " + std::to_string(c.head_dim()) +
             ") must equal expand * hidden_size (" + std::to_string(c.expand() * c.hidden_size()) + ")");
  c.intermediate_size(c.num_heads() * c.head_dim());
  c.num_outputs(c.vocab_size());
  c.validate(origin);
  return c;
}

MambaConfig mamba2_config_from_mamba_ssm(const nlohmann::json& j, const std::string& origin) {
  using io::config_int_in;
  MambaConfig c;
  c.mamba_version(2);
  const nlohmann::json& ssm = j["ssm_cfg"];
  read_mamba_ssm_top_level(j, c, origin);
  refuse(config_int_in(j, "d_intermediate", 0, 0, kMaxHidden * kMaxExpand, origin) != 0, origin, "d_intermediate > 0 (an MLP after each mixer) is not supported");
  refuse(j.contains("attn_layer_idx") && !(j["attn_layer_idx"].is_null() || j["attn_layer_idx"].empty()), origin,
         "attn_layer_idx is not empty: hybrid models with attention layers are not supported");
  c.state_size(config_int_in(ssm, "d_state", 128, 1, kMaxState, origin));
  c.conv_kernel(config_int_in(ssm, "d_conv", 4, 1, kMaxConv, origin));
  c.expand(config_int_in(ssm, "expand", 2, 1, kMaxExpand, origin));
  c.head_dim(config_int_in(ssm, "headdim", 64, 1, kMaxHeadDim, origin));
  c.n_groups(config_int_in(ssm, "ngroups", 1, 1, kMaxHeads, origin));
  c.chunk_size(config_int_in(ssm, "chunk_size", 256, 1, kMaxChunk, origin));
  c.use_bias(io::config_value<bool>(ssm, "bias", false, origin));
  c.use_conv_bias(io::config_value<bool>(ssm, "conv_bias", true, origin));
  read_limit(ssm, "dt_limit", c, origin);
  const int64_t d_inner = c.expand() * c.hidden_size();
  refuse(ssm.contains("d_ssm") && !ssm["d_ssm"].is_null() &&
             config_int_in(ssm, "d_ssm", d_inner, 1, d_inner, origin) != d_inner,
         origin, "ssm_cfg.d_ssm < expand * d_model (d_mlp > 0: the extra MLP split of in_proj) is not supported");
  refuse(!io::config_value<bool>(ssm, "rmsnorm", true, origin), origin,
         "ssm_cfg.rmsnorm = false is not supported (the gated RMSNorm is part of the block)");
  refuse(io::config_value<bool>(ssm, "norm_before_gate", false, origin), origin,
         "ssm_cfg.norm_before_gate = true is not supported");
  refuse(io::config_value<bool>(ssm, "D_has_hdim", false, origin), origin, "ssm_cfg.D_has_hdim = true is not supported");
  refuse(d_inner % c.head_dim() != 0, origin,
         "expand * d_model (" + std::to_string(d_inner) + ") is not a multiple of ssm_cfg.headdim (" +
             std::to_string(c.head_dim()) + ")");
  c.num_heads(d_inner / c.head_dim());
  c.intermediate_size(d_inner);
  c.num_outputs(c.vocab_size());
  c.validate(origin);
  return c;
}

void validate_mamba2(const MambaConfig& c, const std::string& origin) {
  refuse(c.num_heads() < 1 || c.head_dim() < 1 || c.num_heads() * c.head_dim() != c.intermediate_size(), origin,
         "num_heads * head_dim must equal the inner size " + std::to_string(c.intermediate_size()));
  refuse(c.n_groups() < 1 || c.num_heads() % c.n_groups() != 0, origin,
         "n_groups (" + std::to_string(c.n_groups()) + ") must divide num_heads (" + std::to_string(c.num_heads()) + ")");
  refuse(c.chunk_size() < 1, origin, "chunk_size must be >= 1");
  const double lo = c.time_step_min_limit(), hi = c.time_step_max_limit();
  refuse(!(lo >= 0) || !std::isfinite(lo) || !(hi >= lo), origin,
         "time_step_limit must be [min, max] with 0 <= min <= max (max may be Infinity), got [" + std::to_string(lo) +
             ", " + std::to_string(hi) + "]");
}

}  // namespace mamba_lrp
