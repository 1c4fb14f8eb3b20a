#include "csrc/io/image.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>

#include "csrc/io/errors.h"

// The stb implementations live in this file only: PNG and JPEG decoding, PNG encoding.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace mamba_lrp {
namespace io {

namespace {

constexpr int64_t kMaxSide = 16384;

struct StbFree {
  void operator()(stbi_uc* p) const { stbi_image_free(p); }
};

// Output index o of `out` samples reads inputs [first, first + weights.size()) of `in`.
struct Taps {
  int64_t first;
  std::vector<float> weights;
};

// Antialiased bilinear (triangle filter widened by the scale when shrinking, as PIL's
// BILINEAR resize), sample centres at i + 0.5.
std::vector<Taps> resample_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / out;
  const double support = std::max(scale, 1.0);
  std::vector<Taps> taps(out);
  for (int64_t o = 0; o < out; ++o) {
    const double centre = (o + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(centre - support)));
    const int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(std::ceil(centre + support)));
    Taps t{lo, {}};
    double sum = 0;
    for (int64_t j = lo; j < hi; ++j) {
      const double w = std::max(0.0, 1.0 - std::abs((j + 0.5 - centre) / support));
      t.weights.push_back(static_cast<float>(w));
      sum += w;
    }
    if (sum <= 0) {  // cannot happen for in, out >= 1; keep the nearest sample regardless
      t.first = std::min<int64_t>(in - 1, static_cast<int64_t>(centre));
      t.weights = {1.0f};
      sum = 1;
    }
    for (auto& w : t.weights) w = static_cast<float>(w / sum);
    taps[o] = std::move(t);
  }
  return taps;
}

// src (h, w, c) floats -> (nh, nw, c).
std::vector<float> resize_bilinear(const std::vector<float>& src, int64_t h, int64_t w, int64_t c, int64_t nh,
                                   int64_t nw) {
  const auto tx = resample_taps(w, nw), ty = resample_taps(h, nh);
  std::vector<float> mid(h * nw * c, 0.0f);  // horizontal pass
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < nw; ++x)
      for (size_t k = 0; k < tx[x].weights.size(); ++k) {
        const float wt = tx[x].weights[k];
        const float* s = &src[(y * w + tx[x].first + static_cast<int64_t>(k)) * c];
        float* d = &mid[(y * nw + x) * c];
        for (int64_t ch = 0; ch < c; ++ch) d[ch] += wt * s[ch];
      }
  std::vector<float> out(nh * nw * c, 0.0f);  // vertical pass
  for (int64_t y = 0; y < nh; ++y)
    for (size_t k = 0; k < ty[y].weights.size(); ++k) {
      const float wt = ty[y].weights[k];
      const float* s = &mid[(ty[y].first + static_cast<int64_t>(k)) * nw * c];
      float* d = &out[y * nw * c];
      for (int64_t i = 0; i < nw * c; ++i) d[i] += wt * s[i];
    }
  return out;
}

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

}  // namespace

Image read_image(const std::string& path, int64_t channels) {
  if (channels != 1 && channels != 3)
    throw InputError(path + ": images can feed models of 1 or 3 channels, this one has " + std::to_string(channels));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the image");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw InputError(path + ": cannot read the image");
  if (bytes.empty()) throw InputError(path + ": empty file, not a PNG or JPEG image");
  if (bytes.size() > (size_t{1} << 30)) throw InputError(path + ": image file larger than 1 GiB");
  const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(buf, len, &w, &h, &n))
    throw InputError(path + ": not a readable PNG or JPEG image (" + std::string(stbi_failure_reason()) + ")");
  if (w < 1 || h < 1 || w > kMaxSide || h > kMaxSide)
    throw InputError(path + ": image size " + std::to_string(w) + "x" + std::to_string(h) + " is outside [1, " +
                     std::to_string(kMaxSide) + "] a side");
  std::unique_ptr<stbi_uc, StbFree> pixels(stbi_load_from_memory(buf, len, &w, &h, &n, static_cast<int>(channels)));
  if (!pixels) throw InputError(path + ": corrupt image (" + std::string(stbi_failure_reason()) + ")");
  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.data.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * channels);
  return img;
}

at::Tensor image_to_pixel_values(const Image& img, int64_t size, double crop_pct, const std::vector<double>& mean,
                                 const std::vector<double>& std, bool resize, const std::string& origin) {
  const int64_t c = img.channels, h = img.height, w = img.width;
  if (static_cast<int64_t>(mean.size()) != c || static_cast<int64_t>(std.size()) != c)
    throw InputError(origin + ": mean/std need one value per channel (" + std::to_string(c) + ")");
  std::vector<float> v(img.data.begin(), img.data.end());  // (h, w, c) in [0, 255]
  int64_t nh = h, nw = w;
  if (resize) {
    const int64_t target = std::max<int64_t>(size, static_cast<int64_t>(std::floor(size / crop_pct)));
    if (h <= w) {
      nh = target;
      nw = std::max<int64_t>(target, static_cast<int64_t>(static_cast<double>(target) * w / h));
    } else {
      nw = target;
      nh = std::max<int64_t>(target, static_cast<int64_t>(static_cast<double>(target) * h / w));
    }
    if (nh != h || nw != w) v = resize_bilinear(v, h, w, c, nh, nw);
  } else if (h != size || w != size) {
    throw InputError(origin + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", the model takes " +
                     std::to_string(size) + "x" + std::to_string(size) + " (resizing is off)");
  }
  const int64_t top = static_cast<int64_t>(std::lround((nh - size) / 2.0));
  const int64_t left = static_cast<int64_t>(std::lround((nw - size) / 2.0));
  at::Tensor out = at::empty({c, size, size}, at::kFloat);  // (C, H, W)
  float* o = out.data_ptr<float>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x)
        o[(ch * size + y) * size + x] =
            static_cast<float>((v[((top + y) * nw + left + x) * c + ch] / 255.0 - mean[ch]) / std[ch]);
  return out;
}

Image pixel_values_to_image(const at::Tensor& pixel_values, const std::vector<double>& mean,
                            const std::vector<double>& std) {
  const at::Tensor p = pixel_values.to(at::kDouble).contiguous();  // (C, H, W)
  const int64_t c = p.size(0), h = p.size(1), w = p.size(2);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor m = at::tensor(mean, f64).view({-1, 1, 1}), s = at::tensor(std, f64).view({-1, 1, 1});
  at::Tensor v = (p * s + m).clamp(0, 1) * 255;  // (C, H, W)
  if (c != 3) v = v.mean(0, true).expand({3, h, w});
  v = v.permute({1, 2, 0}).round().to(at::kByte).contiguous();  // (H, W, 3)
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.data.assign(v.data_ptr<uint8_t>(), v.data_ptr<uint8_t>() + h * w * 3);
  return img;
}

std::array<uint8_t, 3> blue_white_red(double v) {
  if (!std::isfinite(v)) v = 0;
  v = std::clamp(v, -1.0, 1.0);
  if (v >= 0) return {255, to_byte(255 * (1 - v)), to_byte(255 * (1 - v))};
  return {to_byte(255 * (1 + v)), to_byte(255 * (1 + v)), 255};
}

namespace {
// relevance / max|relevance| as doubles (all zeros stay zero).
std::vector<double> symmetric_scale(const at::Tensor& r) {
  const at::Tensor d = r.to(at::kDouble).contiguous();
  std::vector<double> v(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::abs(x));
  for (double& x : v) x = m > 0 ? x / m : 0.0;
  return v;
}
}  // namespace

Image heatmap_overlay(const Image& base, const at::Tensor& relevance, double alpha) {
  if (relevance.dim() != 2 || relevance.size(0) != base.height || relevance.size(1) != base.width)
    throw InputError("heatmap: relevance must have the image's size");
  const std::vector<double> v = symmetric_scale(relevance);
  Image out;
  out.width = base.width;
  out.height = base.height;
  out.channels = 3;
  out.data.resize(out.width * out.height * 3);
  for (int64_t i = 0; i < out.width * out.height; ++i) {
    double grey = 0;
    for (int64_t ch = 0; ch < base.channels; ++ch) grey += base.data[i * base.channels + ch];
    grey /= base.channels;
    const auto col = blue_white_red(v[i]);
    for (int ch = 0; ch < 3; ++ch) out.data[i * 3 + ch] = to_byte(alpha * col[ch] + (1 - alpha) * grey);
  }
  return out;
}

Image heatmap_grid(const at::Tensor& grid, int64_t cell) {
  if (grid.dim() != 2 || cell < 1) throw InputError("heatmap: the patch grid must be (rows, cols)");
  const int64_t rows = grid.size(0), cols = grid.size(1);
  const std::vector<double> v = symmetric_scale(grid);
  Image out;
  out.width = cols * cell;
  out.height = rows * cell;
  out.channels = 3;
  out.data.resize(out.width * out.height * 3);
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      const auto col = blue_white_red(v[(y / cell) * cols + x / cell]);
      std::copy(col.begin(), col.end(), out.data.begin() + (y * out.width + x) * 3);
    }
  return out;
}

void write_png(const std::string& path, const Image& img) {
  std::vector<unsigned char> bytes;
  auto sink = [](void* ctx, void* data, int size) {
    auto* b = static_cast<std::vector<unsigned char>*>(ctx);
    b->insert(b->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
  };
  if (!stbi_write_png_to_func(sink, &bytes, static_cast<int>(img.width), static_cast<int>(img.height),
                              static_cast<int>(img.channels), img.data.data(),
                              static_cast<int>(img.width * img.channels)))
    throw InputError(path + ": PNG encoding failed");
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot write");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) throw InputError(path + ": write failed");
}

}  // namespace io
}  // namespace mamba_lrp
