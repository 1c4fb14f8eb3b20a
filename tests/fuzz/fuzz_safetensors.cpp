// safetensors: open (header checks) and load every tensor.
#include "csrc/io/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(safetensors) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".safetensors");
  mamba_lrp_fuzz::expect_input_error_only([&] {
    auto f = mamba_lrp::io::SafetensorsFile::open(path);
    for (const auto& name : f.names()) f.load(name);
  });
  return 0;
}
