#include "csrc/app/model_type.h"

#include <nlohmann/json.hpp>

#include "csrc/io/json_file.h"

namespace mamba_lrp {

std::string read_model_type(const std::filesystem::path& model) {
  const std::filesystem::path dir = std::filesystem::is_regular_file(model) ? model.parent_path() : model;
  const nlohmann::json j = io::read_json_file((dir / "config.json").string(), "a model directory needs config.json");
  if (j.is_object() && j.contains("model_type") && j["model_type"].is_string()) return j["model_type"];
  // mamba_ssm's own format has no model_type; its Mamba-2 configs say so in ssm_cfg.
  if (j.is_object() && j.contains("ssm_cfg") && j["ssm_cfg"].is_object() && j["ssm_cfg"].contains("layer") &&
      j["ssm_cfg"]["layer"] == "Mamba2")
    return "mamba2";
  return "mamba";
}

}  // namespace mamba_lrp
