#include "models/mamba_config.h"

#include <fstream>

#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"

namespace mamba_lrp {

MambaConfig MambaConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw io::InputError(origin + ": config.json must hold a JSON object");
  MambaConfig c;
  if (j.contains("d_model") && !j.contains("hidden_size")) {
    // state-spaces format: {"d_model", "n_layer", "vocab_size", "ssm_cfg": {...}, "rms_norm",
    // "residual_in_fp32", "fused_add_norm", "pad_vocab_size_multiple", "tie_embeddings"}
    c.state_spaces_names(true);
    c.hidden_size(io::config_int(j, "d_model", 768, origin));
    c.num_hidden_layers(io::config_int(j, "n_layer", 24, origin));
    int64_t vocab = io::config_int(j, "vocab_size", 50277, origin);
    const int64_t pad = io::config_int(j, "pad_vocab_size_multiple", 8, origin);
    if (pad > 1 && vocab % pad) vocab += pad - vocab % pad;
    c.vocab_size(vocab);
    const nlohmann::json ssm = j.contains("ssm_cfg") && j["ssm_cfg"].is_object() ? j["ssm_cfg"] : nlohmann::json::object();
    c.state_size(io::config_int(ssm, "d_state", 16, origin));
    c.conv_kernel(io::config_int(ssm, "d_conv", 4, origin));
    c.expand(io::config_int(ssm, "expand", 2, origin));
    c.use_bias(io::config_value<bool>(ssm, "bias", false, origin));
    c.use_conv_bias(io::config_value<bool>(ssm, "conv_bias", true, origin));
    c.intermediate_size(c.expand() * c.hidden_size());
    c.time_step_rank((c.hidden_size() + 15) / 16);
    if (ssm.contains("dt_rank") && !(ssm["dt_rank"].is_string() && ssm["dt_rank"] == "auto"))
      c.time_step_rank(io::config_int(ssm, "dt_rank", c.time_step_rank(), origin));
    if (j.contains("rms_norm") && !io::config_value<bool>(j, "rms_norm", true, origin))
      throw io::InputError(origin + ": rms_norm = false (LayerNorm) is not supported for Mamba language models");
    c.residual_in_fp32(io::config_value<bool>(j, "residual_in_fp32", true, origin));
    c.tie_word_embeddings(io::config_value<bool>(j, "tie_embeddings", true, origin));
    c.layer_norm_epsilon(io::config_value<double>(j, "norm_epsilon", 1e-5, origin));
  } else {
    if (j.contains("model_type") && j["model_type"] != "mamba")
      throw io::InputError(origin + ": model_type is " + j["model_type"].dump() + ", expected \"mamba\"");
    c.vocab_size(io::config_int(j, "vocab_size", 50280, origin));
    c.hidden_size(io::config_int(j, "hidden_size", 768, origin));
    c.state_size(io::config_int(j, "state_size", 16, origin));
    c.num_hidden_layers(io::config_int(j, "num_hidden_layers", 32, origin));
    c.layer_norm_epsilon(io::config_value<double>(j, "layer_norm_epsilon", 1e-5, origin));
    c.expand(io::config_int(j, "expand", 2, origin));
    c.conv_kernel(io::config_int(j, "conv_kernel", 4, origin));
    c.intermediate_size(io::config_int(j, "intermediate_size", c.expand() * c.hidden_size(), origin));
    c.time_step_rank((c.hidden_size() + 15) / 16);
    if (j.contains("time_step_rank") && !(j["time_step_rank"].is_string() && j["time_step_rank"] == "auto"))
      c.time_step_rank(io::config_int(j, "time_step_rank", c.time_step_rank(), origin));
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
  positive("vocab_size", vocab_size(), int64_t(1) << 24);
  positive("hidden_size", hidden_size(), 1 << 16);
  positive("state_size", state_size(), 256);
  positive("num_hidden_layers", num_hidden_layers(), 1024);
  positive("conv_kernel", conv_kernel(), 64);
  positive("intermediate_size", intermediate_size(), 1 << 18);
  positive("time_step_rank", time_step_rank(), 1 << 16);
  if (!(layer_norm_epsilon() >= 0) || !std::isfinite(layer_norm_epsilon()))
    throw io::InputError(origin + ": layer_norm_epsilon must be finite and >= 0");
  if (hidden_act() != "silu")
    throw io::InputError(origin + ": hidden_act \"" + hidden_act() + "\" is not supported (Mamba uses \"silu\")");
}

}  // namespace mamba_lrp
