#include "models/mamba_config.h"

#include <fstream>

#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"

namespace mamba_lrp {

using namespace config_limits;

void read_mamba_ssm_top_level(const nlohmann::json& j, MambaConfig& c, const std::string& origin) {
  using io::config_int_in;
  c.state_spaces_names(true);
  c.hidden_size(config_int_in(j, "d_model", 768, 1, kMaxHidden, origin));
  c.num_hidden_layers(config_int_in(j, "n_layer", 24, 1, kMaxLayers, origin));
  int64_t vocab = config_int_in(j, "vocab_size", 50277, 1, kMaxVocab, origin);  // vocab + pad < 2^25
  const int64_t pad = config_int_in(j, "pad_vocab_size_multiple", 8, 0, kMaxPadMultiple, origin);
  if (pad > 1 && vocab % pad) vocab += pad - vocab % pad;
  c.vocab_size(vocab);
  if (j.contains("rms_norm") && !io::config_value<bool>(j, "rms_norm", true, origin))
    throw io::InputError(origin + ": rms_norm = false (LayerNorm) is not supported for Mamba language models");
  c.residual_in_fp32(io::config_value<bool>(j, "residual_in_fp32", true, origin));
  c.tie_word_embeddings(io::config_value<bool>(j, "tie_embeddings", true, origin));
  c.layer_norm_epsilon(io::config_value<double>(j, "norm_epsilon", 1e-5, origin));
}

MambaConfig MambaConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw io::InputError(origin + ": config.json must hold a JSON object");
  using io::config_int_in;
  if (is_mamba2_json(j))
    return j.contains("d_model") && !j.contains("hidden_size") ? mamba2_config_from_mamba_ssm(j, origin)
                                                               : mamba2_config_from_hf(j, origin);
  MambaConfig c;
  // Every product below is of bounded keys: expand * hidden_size <= 2^22, vocab + pad < 2^25.
  if (j.contains("d_model") && !j.contains("hidden_size")) {
    if (j.contains("ssm_cfg") && j["ssm_cfg"].is_object() && j["ssm_cfg"].contains("layer") &&
        j["ssm_cfg"]["layer"] != "Mamba1")
      throw io::InputError(origin + ": ssm_cfg.layer is " + j["ssm_cfg"]["layer"].dump() +
                           ", expected \"Mamba1\" or \"Mamba2\"");
    // state-spaces format: {"d_model", "n_layer", "vocab_size", "ssm_cfg": {...}, "rms_norm",
    // "residual_in_fp32", "fused_add_norm", "pad_vocab_size_multiple", "tie_embeddings"}
    read_mamba_ssm_top_level(j, c, origin);
    const nlohmann::json ssm = j.contains("ssm_cfg") && j["ssm_cfg"].is_object() ? j["ssm_cfg"] : nlohmann::json::object();
    c.state_size(config_int_in(ssm, "d_state", 16, 1, kMaxState, origin));
    c.conv_kernel(config_int_in(ssm, "d_conv", 4, 1, kMaxConv, origin));
    c.expand(config_int_in(ssm, "expand", 2, 1, kMaxExpand, origin));
    c.use_bias(io::config_value<bool>(ssm, "bias", false, origin));
    c.use_conv_bias(io::config_value<bool>(ssm, "conv_bias", true, origin));
    c.intermediate_size(c.expand() * c.hidden_size());
    c.time_step_rank((c.hidden_size() + 15) / 16);
    if (ssm.contains("dt_rank") && !(ssm["dt_rank"].is_string() && ssm["dt_rank"] == "auto"))
      c.time_step_rank(config_int_in(ssm, "dt_rank", c.time_step_rank(), 1, kMaxRank, origin));
  } else {
    if (j.contains("model_type") && j["model_type"] != "mamba")
      throw io::InputError(origin + ": model_type is " + j["model_type"].dump() + ", expected \"mamba\" or \"mamba2\"");
    c.vocab_size(config_int_in(j, "vocab_size", 50280, 1, kMaxVocab, origin));
    c.hidden_size(config_int_in(j, "hidden_size", 768, 1, kMaxHidden, origin));
    c.state_size(config_int_in(j, "state_size", 16, 1, kMaxState, origin));
    c.num_hidden_layers(config_int_in(j, "num_hidden_layers", 32, 1, kMaxLayers, origin));
    c.layer_norm_epsilon(io::config_value<double>(j, "layer_norm_epsilon", 1e-5, origin));
    c.expand(config_int_in(j, "expand", 2, 1, kMaxExpand, origin));  // checked even when intermediate_size is given
    c.conv_kernel(config_int_in(j, "conv_kernel", 4, 1, kMaxConv, origin));
    c.intermediate_size(config_int_in(j, "intermediate_size", c.expand() * c.hidden_size(), 1, kMaxIntermediate, origin));
    c.time_step_rank((c.hidden_size() + 15) / 16);
    if (j.contains("time_step_rank") && !(j["time_step_rank"].is_string() && j["time_step_rank"] == "auto"))
      c.time_step_rank(config_int_in(j, "time_step_rank", c.time_step_rank(), 1, kMaxRank, origin));
    c.use_bias(io::config_value<bool>(j, "use_bias", false, origin));
    c.use_conv_bias(io::config_value<bool>(j, "use_conv_bias", true, origin));
    c.residual_in_fp32(io::config_value<bool>(j, "residual_in_fp32", true, origin));
    c.tie_word_embeddings(io::config_value<bool>(j, "tie_word_embeddings", true, origin));
    c.hidden_act(io::config_value<std::string>(j, "hidden_act", "silu", origin));
  }
  c.num_outputs(c.vocab_size());
  c.validate(origin);
  return c;
}

MambaConfig MambaConfig::from_file(const std::string& path) {
  return from_json(io::read_json_file(path, "a model directory needs config.json"), path);
}

void MambaConfig::validate(const std::string& origin) const {
  auto positive = [&](const char* key, int64_t v, int64_t max) {
    if (v < 1 || v > max)
      throw io::InputError(origin + ": " + key + " must be in [1, " + std::to_string(max) + "], got " + std::to_string(v));
  };
  positive("vocab_size", vocab_size(), kMaxVocab);
  positive("hidden_size", hidden_size(), kMaxHidden);
  positive("state_size", state_size(), kMaxState);
  positive("num_hidden_layers", num_hidden_layers(), kMaxLayers);
  positive("conv_kernel", conv_kernel(), kMaxConv);
  positive("expand", expand(), kMaxExpand);
  positive("intermediate_size", intermediate_size(), kMaxIntermediate);
  positive("time_step_rank", time_step_rank(), kMaxRank);
  positive("num_outputs", num_outputs(), kMaxVocab);
  if (!(layer_norm_epsilon() >= 0) || !std::isfinite(layer_norm_epsilon()))
    throw io::InputError(origin + ": layer_norm_epsilon must be finite and >= 0");
  if (hidden_act() != "silu")
    throw io::InputError(origin + ": hidden_act \"" + hidden_act() + "\" is not supported (Mamba uses \"silu\")");
  if (is_mamba2()) validate_mamba2(*this, origin);
}

}  // namespace mamba_lrp
