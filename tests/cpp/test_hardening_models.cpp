// Regression tests for the hostile configs and images of issue 14: every key is checked in
// a range before arithmetic uses it, sizes the config implies are checked against the
// weight file before the model is built, and images are bounded and resized crop-only.
#include "csrc/io/errors.h"
#include "csrc/io/image.h"
#include "csrc/io/safetensors.h"
#include "models/mamba.h"
#include "models/mamba_config.h"
#include "models/vim_config.h"
#include "models/vision_mamba.h"

#include "io_test_util.h"

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <cmath>
#include <fstream>

using Catch::Matchers::Contains;
using mamba_lrp::MambaConfig;
using mamba_lrp::VimConfig;
using namespace io_test;

namespace {

std::string mamba_error(const nlohmann::json& j) { return input_error_of([&] { MambaConfig::from_json(j, "config.json"); }); }
std::string vim_error(const nlohmann::json& j) { return input_error_of([&] { VimConfig::from_json(j, "config.json"); }); }

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

}  // namespace

TEST_CASE("hardening: Mamba config keys are range-checked before any arithmetic", "[hardening]") {
  // The vocab round-up of the state-spaces format overflowed before the check: the message
  // must quote the value as given.
  CHECK_THAT(mamba_error({{"d_model", 64}, {"n_layer", 2}, {"vocab_size", INT64_MAX - 1}, {"pad_vocab_size_multiple", 8}}),
             Contains("config.json") && Contains("vocab_size") && Contains(std::to_string(INT64_MAX - 1)));
  // expand * hidden_size and hidden_size + 15 overflowed: the key as given is named.
  CHECK_THAT(mamba_error({{"hidden_size", INT64_MAX}, {"expand", 4}}),
             Contains("hidden_size") && Contains(std::to_string(INT64_MAX)));
  CHECK_THAT(mamba_error({{"d_model", INT64_MAX}}), Contains("d_model") && Contains(std::to_string(INT64_MAX)));
  // expand was not checked at all when intermediate_size was given
  CHECK_THAT(mamba_error({{"hidden_size", 64}, {"expand", -5}, {"intermediate_size", 128}}), Contains("expand"));
  CHECK_THAT(mamba_error({{"hidden_size", 64}, {"expand", 1000000}, {"intermediate_size", 128}}), Contains("expand"));
  // an unsigned value beyond int64 does not wrap to a negative one
  CHECK_THAT(mamba_error(nlohmann::json::parse(R"({"hidden_size": 18446744073709551615})")),
             Contains("hidden_size") && Contains("out of range"));
  // control: a valid config still loads
  CHECK(MambaConfig::from_json({{"hidden_size", 64}, {"intermediate_size", 96}}, "config.json").intermediate_size() == 96);
}

TEST_CASE("hardening: Vim config keys are range-checked before they size anything", "[hardening]") {
  // in_chans sized the mean/std vectors before its check: -1 threw std::length_error, 2e8
  // allocated 4.8 GB first.
  CHECK_THAT(vim_error({{"in_chans", -1}}), Contains("config.json") && Contains("in_chans"));
  CHECK_THAT(vim_error({{"in_chans", 200000000}}), Contains("in_chans") && Contains("200000000"));
  CHECK_THAT(vim_error({{"channels", -3}}), Contains("channels"));
  CHECK_THAT(vim_error({{"embed_dim", INT64_MAX}}), Contains("embed_dim") && Contains(std::to_string(INT64_MAX)));
  CHECK_THAT(vim_error({{"expand", INT64_MAX}}), Contains("expand"));
  CHECK_THAT(vim_error({{"ssm_cfg", {{"d_conv", -2}}}}), Contains("d_conv"));
  CHECK(VimConfig::from_json({{"in_chans", 1}}, "config.json").mean().size() == 1);
}

TEST_CASE("hardening: sizes a config implies are checked against the weights before the model is built",
          "[hardening]") {
  TempDir dir;
  auto write_json = [&](const nlohmann::json& j) { write_bytes(dir.file("config.json"), j.dump()); };
  const long rss_before = peak_rss_kib();
  // Mamba: an embedding of 2^24 x 2^16 floats (4 TiB) from a file of a few bytes.
  write_json({{"vocab_size", 1 << 24}, {"hidden_size", 1 << 16}, {"num_hidden_layers", 1}, {"intermediate_size", 16}});
  mamba_lrp::io::save_safetensors(dir.file("model.safetensors"),
                                  {{"backbone.embeddings.weight", at::zeros({4, 8})}});
  CHECK_THAT(input_error_of([&] { mamba_lrp::load_mamba_lm(dir.path, at::kFloat); }),
             Contains("model.safetensors") && Contains("backbone.embeddings.weight") && Contains("from config.json"));
  // Vim: img_size 16384 with 1-pixel patches gives 2^28 positions (a 200 GB pos_embed).
  write_json({{"model_type", "vim"}, {"img_size", 16384}, {"patch_size", 1}, {"embed_dim", 192}, {"depth", 1}});
  mamba_lrp::io::save_safetensors(dir.file("model.safetensors"), {{"patch_embed.proj.weight", at::zeros({192, 3, 1, 1})}});
  CHECK_THAT(input_error_of([&] { mamba_lrp::load_vision_mamba(dir.path, at::kFloat); }),
             Contains("model.safetensors") && Contains("pos_embed"));
  // Refused before allocating: the peak grew by far less than the model would take.
  CHECK(peak_rss_kib() - rss_before < 512 * 1024);
}

namespace {

// A PNG whose header claims width x height, with one empty IDAT chunk: only the header is
// valid. CRCs computed here (zlib's polynomial).
uint32_t crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::string chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}
std::string png_header_only(uint32_t width, uint32_t height) {
  const std::string ihdr = be32(width) + be32(height) + std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", "") + chunk("IEND", "");
}

// The reference for the crop-only resize: PIL's antialiased bilinear filter over the whole
// image, in double, then the centre crop; written independently of image.cpp.
std::vector<double> resize_then_crop(const mamba_lrp::io::Image& img, int64_t nh, int64_t nw, int64_t size) {
  auto filter = [](int64_t in, int64_t out) {
    std::vector<std::vector<double>> m(out, std::vector<double>(in, 0.0));
    const double scale = static_cast<double>(in) / out, support = std::max(scale, 1.0);
    for (int64_t o = 0; o < out; ++o) {
      const double centre = (o + 0.5) * scale;
      double sum = 0;
      for (int64_t j = 0; j < in; ++j) {
        const double d = std::abs((j + 0.5 - centre) / support);
        if (j >= std::floor(centre - support) && j < std::ceil(centre + support)) {
          m[o][j] = std::max(0.0, 1.0 - d);
          sum += m[o][j];
        }
      }
      for (auto& w : m[o]) w /= sum;
    }
    return m;
  };
  const auto fy = filter(img.height, nh), fx = filter(img.width, nw);
  const int64_t top = std::lround((nh - size) / 2.0), left = std::lround((nw - size) / 2.0), c = img.channels;
  std::vector<double> out(size * size * c, 0.0);
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        double v = 0;
        for (int64_t i = 0; i < img.height; ++i)
          for (int64_t j = 0; j < img.width; ++j)
            v += fy[top + y][i] * fx[left + x][j] * img.data[(i * img.width + j) * c + ch];
        out[(y * size + x) * c + ch] = v;
      }
  return out;
}

}  // namespace

TEST_CASE("hardening: images beyond the pixel limit are refused from the header", "[hardening]") {
  TempDir dir;
  const std::string p = dir.file("huge.png");
  // 16384 x 16384 (2^28 pixels, 768 MiB as RGB) from 57 bytes: refused before decoding.
  write_bytes(p, png_header_only(16384, 16384));
  CHECK_THAT(input_error_of([&] { mamba_lrp::io::read_image(p, 3); }),
             Contains("huge.png") && Contains("16384x16384") && Contains("limits"));
  CHECK_THAT(input_error_of([&] { mamba_lrp::io::read_image_info(p); }), Contains("limits"));
  // within the limits, the header alone is readable; its pixels are not
  write_bytes(p, png_header_only(64, 32));
  CHECK(mamba_lrp::io::read_image_info(p).width == 64);
  CHECK_THAT(input_error_of([&] { mamba_lrp::io::read_image(p, 3); }), Contains("huge.png") && Contains("corrupt"));
}

TEST_CASE("hardening: resizing computes only the centre crop", "[hardening]") {
  using mamba_lrp::io::Image;
  const std::vector<double> mean{0, 0, 0}, stdev{1, 1, 1};
  // Values: against resizing the whole image in double and cropping (tolerance: float
  // accumulation of at most a few hundred taps of values <= 255, relative 1e-5).
  for (auto [w, h] : {std::pair<int64_t, int64_t>{37, 9}, {9, 41}, {23, 23}}) {
    Image img;
    img.width = w;
    img.height = h;
    img.channels = 3;
    for (int64_t i = 0; i < w * h * 3; ++i) img.data.push_back(static_cast<uint8_t>((i * 37 + i / 7) % 256));
    const int64_t size = 6, target = static_cast<int64_t>(std::floor(size / 0.875));
    const int64_t nh = h <= w ? target : std::max<int64_t>(target, static_cast<int64_t>(double(target) * h / w));
    const int64_t nw = h <= w ? std::max<int64_t>(target, static_cast<int64_t>(double(target) * w / h)) : target;
    const at::Tensor got = mamba_lrp::io::image_to_pixel_values(img, size, 0.875, mean, stdev, true, "img") * 255;
    const auto ref = resize_then_crop(img, nh, nw, size);
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t y = 0; y < size; ++y)
        for (int64_t x = 0; x < size; ++x)
          CHECK(got[ch][y][x].item<double>() == Approx(ref[(y * size + x) * 3 + ch]).epsilon(1e-5).margin(1e-3));
  }
  // A 16384 x 1 image for a 224-pixel model: the whole resize would be 256 x 4.2M x 3
  // floats (12.9 GB); the crop is 224 x 224.
  Image line;
  line.width = 16384;
  line.height = 1;
  line.channels = 3;
  line.data.assign(16384 * 3, 128);
  const long rss_before = peak_rss_kib();
  const at::Tensor px = mamba_lrp::io::image_to_pixel_values(line, 224, 0.875, mean, stdev, true, "line");
  CHECK(peak_rss_kib() - rss_before < 256 * 1024);
  CHECK(px.sizes() == at::IntArrayRef({3, 224, 224}));
  CHECK((px * 255 - 128).abs().max().item<double>() < 1e-3);  // a constant image stays constant
}
