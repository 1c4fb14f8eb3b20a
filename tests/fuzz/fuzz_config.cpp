// config.json of a Mamba LM (Mamba-1 and Mamba-2: HF and mamba_ssm formats) and of a Vision
// Mamba model.
#include <nlohmann/json.hpp>

#include "models/mamba_config.h"
#include "models/vim_config.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(config) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".json");
  mamba_lrp_fuzz::expect_input_error_only([&] { mamba_lrp::MambaConfig::from_file(path); });
  mamba_lrp_fuzz::expect_input_error_only([&] { mamba_lrp::VimConfig::from_file(path); });
  return 0;
}
