// Images for Vision Mamba explanations: PNG and JPEG reading (libpng, libjpeg-turbo),
// timm-style preprocessing (resize the shorter side to img_size / crop_pct with an
// antialiased bilinear filter, centre crop, per-channel normalisation), and PNG heatmaps
// (libpng) on a blue-white-red scale symmetric around zero.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mamba_lrp {
namespace io {

// 8-bit image, rows top to bottom, channels interleaved (1 = grey, 3 = RGB).
struct Image {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> data;  // height * width * channels
};

// Limits on an input image (README, command line): the file, the sides, the decoded pixels
// (2^26 pixels: 192 MiB as RGB), and the scans of a progressive JPEG.
constexpr uint64_t kMaxImageFileBytes = uint64_t(1) << 30;
constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(1) << 26;
constexpr int kMaxJpegScans = 1000;

struct ImageInfo {
  int64_t width = 0, height = 0;
};

// The size from the file's header only (no pixel decoded): InputError as read_image's for
// a file that is not a PNG/JPEG, has a corrupt header or exceeds the limits.
ImageInfo read_image_info(const std::string& path);

// Reads a PNG or JPEG file as `channels` (1 or 3) channels: RGB (a PNG's alpha dropped, as
// PIL's convert("RGB")), or grey by ITU-R 601 luma (PIL's convert("L")). InputError naming
// the file when it cannot be read, is not a PNG/JPEG, is corrupt, is a CMYK JPEG, or
// exceeds the limits above. The decoded pixels are the only copy made of the image.
Image read_image(const std::string& path, int64_t channels = 3);

// Image -> pixel_values (C, size, size) float32: with `resize`, the shorter side is scaled to
// floor(size / crop_pct) and the centre size x size cropped (timm's evaluation transform);
// without, the image must be size x size already (InputError naming `origin` otherwise).
// Then x = (v / 255 - mean[c]) / std[c].
at::Tensor image_to_pixel_values(const Image& img, int64_t size, double crop_pct, const std::vector<double>& mean,
                                 const std::vector<double>& std, bool resize, const std::string& origin);

// pixel_values (C, H, W) back to an 8-bit RGB image (x * std + mean, clamped to [0, 1]);
// one channel is repeated as grey, other counts show their channel mean.
Image pixel_values_to_image(const at::Tensor& pixel_values, const std::vector<double>& mean,
                            const std::vector<double>& std);

// The colour of v in [-1, 1]: blue (-1), white (0), red (+1).
std::array<uint8_t, 3> blue_white_red(double v);

// relevance (H, W) on the blue-white-red scale (symmetric: +-max|R|) blended over the grey
// version of `base` (same H x W): out = alpha * heat + (1 - alpha) * grey.
Image heatmap_overlay(const Image& base, const at::Tensor& relevance, double alpha = 0.7);

// grid (rows, cols) on the blue-white-red scale, each cell `cell` x `cell` pixels.
Image heatmap_grid(const at::Tensor& grid, int64_t cell);

// Writes an 8-bit PNG; InputError naming the file when it cannot be written.
void write_png(const std::string& path, const Image& img);

}  // namespace io
}  // namespace mamba_lrp
