// torch.save files (zip and legacy pickle formats) through our restricted unpickler.
#include "csrc/io/checkpoint.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(torch_save) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".pth");
  mamba_lrp_fuzz::expect_input_error_only([&] { mamba_lrp::io::load_torch_checkpoint(path, at::kFloat); });
  return 0;
}
