// PNG / JPEG decoding and the preprocessing of --image (resize + centre crop at a Vim
// model's 224 pixels, and the no-resize check), as 3 and 1 channels.
#include "csrc/io/image.h"
#include "tests/fuzz/fuzz_target.h"

FUZZ_TARGET(image) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".img");
  for (int64_t channels : {3, 1})
    mamba_lrp_fuzz::expect_input_error_only([&] {
      mamba_lrp::io::read_image_info(path);
      const auto img = mamba_lrp::io::read_image(path, channels);
      const std::vector<double> mean(channels, 0.5), std(channels, 0.25);
      mamba_lrp::io::image_to_pixel_values(img, 224, 0.875, mean, std, true, path);
      mamba_lrp::io::image_to_pixel_values(img, 224, 0.875, mean, std, false, path);
    });
  return 0;
}
