// Composite files (--composite): rules per layer role.
#include <nlohmann/json.hpp>

#include "rules/propagation.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(composite) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".json");
  mamba_lrp_fuzz::expect_input_error_only([&] { mamba_lrp::rules::Composite::from_file(path); });
  return 0;
}
