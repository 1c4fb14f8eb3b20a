// PNG / JPEG decoding and the preprocessing of --image (resize + centre crop at a Vim
// model's 224 pixels, and the no-resize check), as 3 and 1 channels.
//
// Images whose header announces more than 2^22 pixels are checked up to their header only:
// a few hundred bytes of progressive JPEG can describe a legal 7-megapixel image, whose decode
// and resize cost time linear in its pixels (1.6 s per read + preprocess at the 2^26-pixel
// limit, optimised build) and ten times that under the sanitizers: past libFuzzer's timeout
// without being a fault. The size limits themselves are tested in tests/cpp/test_hardening_models.cpp.
#include "csrc/io/image.h"
#include "tests/fuzz/fuzz_target.h"

namespace {
constexpr int64_t kMaxFuzzedPixels = int64_t{1} << 22;
}

FUZZ_TARGET(image) {
  const std::string path = mamba_lrp_fuzz::write_input_file(data, size, ".img");
  for (int64_t channels : {3, 1})
    mamba_lrp_fuzz::expect_input_error_only([&] {
      const auto info = mamba_lrp::io::read_image_info(path);
      if (info.width * info.height > kMaxFuzzedPixels) return;
      const auto img = mamba_lrp::io::read_image(path, channels);
      const std::vector<double> mean(channels, 0.5), std(channels, 0.25);
      mamba_lrp::io::image_to_pixel_values(img, 224, 0.875, mean, std, true, path);
      mamba_lrp::io::image_to_pixel_values(img, 224, 0.875, mean, std, false, path);
    });
  return 0;
}
