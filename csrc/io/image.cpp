#include "csrc/io/image.h"

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE
#include <cstring>
#include <fstream>

#include <jpeglib.h>
#include <png.h>

#include "csrc/io/errors.h"

namespace mamba_lrp {
namespace io {

namespace {

// Output index o of `out` samples reads inputs [first, first + weights.size()) of `in`.
struct Taps {
  int64_t first;
  std::vector<float> weights;
};

// Antialiased bilinear (triangle filter widened by the scale when shrinking, as PIL's
// BILINEAR resize), sample centres at i + 0.5.
// Only the outputs [first_out, first_out + count) are made.
std::vector<Taps> resample_taps(int64_t in, int64_t out, int64_t first_out, int64_t count) {
  const double scale = static_cast<double>(in) / out;
  const double support = std::max(scale, 1.0);
  std::vector<Taps> taps(count);
  for (int64_t o = first_out; o < first_out + count; ++o) {
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
    taps[o - first_out] = std::move(t);
  }
  return taps;
}

// The part [top, top + size) x [left, left + size) of the image `src` (h, w, c) resized to
// (nh, nw): only the output pixels inside the crop are computed, and only the input rows
// they read are filtered horizontally, so the cost follows the crop, not the resized image
// (a 16384 x 1 image resized whole to 256 x 4.2M for a 224 crop would be 12.9 GB of
// floats). Same taps and sums as resizing the whole image and then cropping, so the same
// values. Returns (size, size, c).
std::vector<float> resize_crop(const std::vector<uint8_t>& src, int64_t h, int64_t w, int64_t c, int64_t nh,
                               int64_t nw, int64_t top, int64_t left, int64_t size) {
  const auto tx = resample_taps(w, nw, left, size), ty = resample_taps(h, nh, top, size);
  int64_t row_lo = h, row_hi = 0;  // the input rows the vertical taps read
  for (const auto& t : ty) {
    row_lo = std::min(row_lo, t.first);
    row_hi = std::max(row_hi, t.first + static_cast<int64_t>(t.weights.size()));
  }
  const int64_t rows = std::max<int64_t>(0, row_hi - row_lo);
  std::vector<float> mid(static_cast<size_t>(rows * size * c), 0.0f);  // horizontal pass
  for (int64_t y = 0; y < rows; ++y)
    for (int64_t x = 0; x < size; ++x)
      for (size_t k = 0; k < tx[x].weights.size(); ++k) {
        const float wt = tx[x].weights[k];
        const uint8_t* s = &src[((row_lo + y) * w + tx[x].first + static_cast<int64_t>(k)) * c];
        float* d = &mid[(y * size + x) * c];
        for (int64_t ch = 0; ch < c; ++ch) d[ch] += wt * static_cast<float>(s[ch]);
      }
  std::vector<float> out(static_cast<size_t>(size * size * c), 0.0f);  // vertical pass
  for (int64_t y = 0; y < size; ++y)
    for (size_t k = 0; k < ty[y].weights.size(); ++k) {
      const float wt = ty[y].weights[k];
      const float* s = &mid[(ty[y].first - row_lo + static_cast<int64_t>(k)) * size * c];
      float* d = &out[y * size * c];
      for (int64_t i = 0; i < size * c; ++i) d[i] += wt * s[i];
    }
  return out;
}

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

}  // namespace

namespace {

bool is_png(const std::vector<unsigned char>& b) { return b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0; }
bool is_jpeg(const std::vector<unsigned char>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the image");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0) throw InputError(path + ": cannot read the image");
  if (static_cast<uint64_t>(size) > kMaxImageFileBytes)
    throw InputError(path + ": image file of " + std::to_string(size) + " bytes exceeds the limit of " +
                     std::to_string(kMaxImageFileBytes));
  f.seekg(0, std::ios::beg);
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(bytes.data()), size);
  if (f.gcount() != size) throw InputError(path + ": cannot read the image");
  if (bytes.empty()) throw InputError(path + ": empty file, not a PNG or JPEG image");
  if (!is_png(bytes) && !is_jpeg(bytes)) throw InputError(path + ": not a readable PNG or JPEG image (unknown signature)");
  return bytes;
}

void check_size(const std::string& path, int64_t w, int64_t h) {
  if (w < 1 || h < 1 || w > kMaxImageSide || h > kMaxImageSide || w * h > kMaxImagePixels)
    throw InputError(path + ": image size " + std::to_string(w) + "x" + std::to_string(h) + " is outside the limits (" +
                     std::to_string(kMaxImageSide) + " pixels a side, " + std::to_string(kMaxImagePixels) +
                     " pixels in all)");
}

// libpng's simplified API: it reports errors through image.message, no longjmp reaches us.
struct PngImage {
  png_image img;
  PngImage() {
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
  }
  ~PngImage() { png_image_free(&img); }
};

ImageInfo png_info(const std::string& path, const std::vector<unsigned char>& bytes, PngImage* png) {
  if (!png_image_begin_read_from_memory(&png->img, bytes.data(), bytes.size()))
    throw InputError(path + ": not a readable PNG image (" + std::string(png->img.message) + ")");
  return {static_cast<int64_t>(png->img.width), static_cast<int64_t>(png->img.height)};
}

// RGB (the alpha channel, if any, dropped as PIL's convert("RGB") does).
void png_decode(const std::string& path, PngImage* png, Image* out) {
  const bool alpha = png->img.format & PNG_FORMAT_FLAG_ALPHA;
  png->img.format = alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  const size_t n = static_cast<size_t>(out->width * out->height);
  std::vector<uint8_t> rgba;
  uint8_t* dest = out->data.data();
  if (alpha) {
    rgba.resize(n * 4);
    dest = rgba.data();
  }
  if (!png_image_finish_read(&png->img, nullptr, dest, 0, nullptr))
    throw InputError(path + ": corrupt PNG image (" + std::string(png->img.message) + ")");
  for (size_t i = 0; alpha && i < n; ++i)
    for (int c = 0; c < 3; ++c) out->data[i * 3 + c] = rgba[i * 4 + c];
}

// libjpeg reports errors by calling error_exit, which must not return: it jumps back to
// the setjmp in jpeg_run. Nothing with a destructor lives in jpeg_run's frame between the
// setjmp and a jump, so the jump skips no destructor.
struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};
void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_no_output(j_common_ptr) {}  // warnings (recoverable corruption) are not printed
// A progressive JPEG may hold thousands of tiny scans, each a pass over the whole image:
// a few kilobytes could take minutes. Refuse more scans than any encoder writes.
void jpeg_scan_limit(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
    std::snprintf(e->message, sizeof e->message, "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(e->jump, 1);
  }
}

// Reads the header (decode == nullptr) or the whole image as RGB into decode->data (sized
// by the caller from the header). Returns false with errors->message set on failure.
bool jpeg_run(const unsigned char* bytes, size_t size, ImageInfo* info, Image* decode, JpegErrors* errors) {
  jpeg_decompress_struct cinfo;
  jpeg_progress_mgr progress;
  cinfo.err = jpeg_std_error(&errors->mgr);
  errors->mgr.error_exit = jpeg_error_exit;
  errors->mgr.output_message = jpeg_no_output;
  errors->message[0] = 0;
  if (setjmp(errors->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = jpeg_scan_limit;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  info->width = cinfo.image_width;
  info->height = cinfo.image_height;
  if (decode) {
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
      std::snprintf(errors->message, sizeof errors->message, "CMYK JPEG images are not supported");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (static_cast<int64_t>(cinfo.output_width) != decode->width ||
        static_cast<int64_t>(cinfo.output_height) != decode->height || cinfo.output_components != 3) {
      std::snprintf(errors->message, sizeof errors->message, "unexpected output size");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    const size_t stride = static_cast<size_t>(decode->width) * 3;
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = decode->data.data() + cinfo.output_scanline * stride;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  return true;
}

ImageInfo jpeg_info(const std::string& path, const std::vector<unsigned char>& bytes) {
  ImageInfo info;
  JpegErrors errors;
  if (!jpeg_run(bytes.data(), bytes.size(), &info, nullptr, &errors))
    throw InputError(path + ": not a readable JPEG image (" + std::string(errors.message) + ")");
  return info;
}

// PIL's "L" conversion (ITU-R 601-2 luma), rounded; grey stays grey exactly.
void to_grey(Image* img) {
  const size_t n = static_cast<size_t>(img->width * img->height);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &img->data[i * 3];
    img->data[i] = static_cast<uint8_t>((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
  }
  img->data.resize(n);
  img->data.shrink_to_fit();
  img->channels = 1;
}

}  // namespace

ImageInfo read_image_info(const std::string& path) {
  const std::vector<unsigned char> bytes = read_file_bytes(path);
  ImageInfo info;
  if (is_png(bytes)) {
    PngImage png;
    info = png_info(path, bytes, &png);
  } else {
    info = jpeg_info(path, bytes);
  }
  check_size(path, info.width, info.height);
  return info;
}

Image read_image(const std::string& path, int64_t channels) {
  if (channels != 1 && channels != 3)
    throw InputError(path + ": images can feed models of 1 or 3 channels, this one has " + std::to_string(channels));
  const std::vector<unsigned char> bytes = read_file_bytes(path);
  Image img;
  img.channels = 3;
  if (is_png(bytes)) {
    PngImage png;
    const ImageInfo info = png_info(path, bytes, &png);
    check_size(path, info.width, info.height);
    img.width = info.width;
    img.height = info.height;
    img.data.resize(static_cast<size_t>(img.width * img.height * 3));
    png_decode(path, &png, &img);
  } else {
    const ImageInfo info = jpeg_info(path, bytes);
    check_size(path, info.width, info.height);
    img.width = info.width;
    img.height = info.height;
    img.data.resize(static_cast<size_t>(img.width * img.height * 3));
    ImageInfo again;
    JpegErrors errors;
    if (!jpeg_run(bytes.data(), bytes.size(), &again, &img, &errors))
      throw InputError(path + ": corrupt JPEG image (" + std::string(errors.message) + ")");
  }
  if (channels == 1) to_grey(&img);
  return img;
}

at::Tensor image_to_pixel_values(const Image& img, int64_t size, double crop_pct, const std::vector<double>& mean,
                                 const std::vector<double>& std, bool resize, const std::string& origin) {
  const int64_t c = img.channels, h = img.height, w = img.width;
  if (static_cast<int64_t>(mean.size()) != c || static_cast<int64_t>(std.size()) != c)
    throw InputError(origin + ": mean/std need one value per channel (" + std::to_string(c) + ")");
  if (static_cast<int64_t>(img.data.size()) != h * w * c) throw InputError(origin + ": image data has the wrong size");
  at::Tensor out = at::empty({c, size, size}, at::kFloat);  // (C, H, W)
  float* o = out.data_ptr<float>();
  auto store = [&](auto pixel) {  // pixel(y, x, ch) in [0, 255] of the size x size crop
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < size; ++y)
        for (int64_t x = 0; x < size; ++x)
          o[(ch * size + y) * size + x] = static_cast<float>((pixel(y, x, ch) / 255.0 - mean[ch]) / std[ch]);
  };
  int64_t nh = h, nw = w;
  if (resize) {
    const int64_t target = std::max<int64_t>(size, static_cast<int64_t>(std::floor(size / crop_pct)));
    // the longer side in double: 16384 / 1 * target still fits easily
    if (h <= w) {
      nh = target;
      nw = std::max<int64_t>(target, static_cast<int64_t>(static_cast<double>(target) * w / h));
    } else {
      nw = target;
      nh = std::max<int64_t>(target, static_cast<int64_t>(static_cast<double>(target) * h / w));
    }
  } else if (h != size || w != size) {
    throw InputError(origin + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", the model takes " +
                     std::to_string(size) + "x" + std::to_string(size) + " (resizing is off)");
  }
  const int64_t top = static_cast<int64_t>(std::lround((nh - size) / 2.0));
  const int64_t left = static_cast<int64_t>(std::lround((nw - size) / 2.0));
  if (nh == h && nw == w) {
    store([&](int64_t y, int64_t x, int64_t ch) { return static_cast<float>(img.data[((top + y) * w + left + x) * c + ch]); });
  } else {
    const std::vector<float> v = resize_crop(img.data, h, w, c, nh, nw, top, left, size);  // (size, size, c)
    store([&](int64_t y, int64_t x, int64_t ch) { return v[(y * size + x) * c + ch]; });
  }
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
  if (img.channels != 1 && img.channels != 3) throw InputError(path + ": PNG images are written as grey or RGB");
  PngImage png;
  png.img.width = static_cast<png_uint_32>(img.width);
  png.img.height = static_cast<png_uint_32>(img.height);
  png.img.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(png.img, size, 0, img.data.data(), 0, nullptr))
    throw InputError(path + ": PNG encoding failed (" + std::string(png.img.message) + ")");
  std::vector<unsigned char> bytes(size);
  if (!png_image_write_to_memory(&png.img, bytes.data(), &size, 0, img.data.data(), 0, nullptr))
    throw InputError(path + ": PNG encoding failed (" + std::string(png.img.message) + ")");
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot write");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(size));
  f.close();
  if (!f) throw InputError(path + ": write failed");
}

}  // namespace io
}  // namespace mamba_lrp
