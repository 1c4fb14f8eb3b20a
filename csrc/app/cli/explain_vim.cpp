// mamba-lrp explain for Vision Mamba models:
//   mamba-lrp explain --model DIR (--input FILE.safetensors | --image F.png|F.jpg) [--no-resize]
//       [--method NAME] [--target N|argmax] [--composite FILE.json] [--dtype float32|float64]
//       [--zero-bias] [--json OUT|-] [--png OUT.png] [--output OUT.safetensors]
//       [--jsonl OUT [--resume]] [--batch-size K] [--timeout S]
// --png OUT.png writes the pixel heatmap blended over the image and OUT_patches.png the patch
// grid (with several rows: OUT_0.png, OUT_0_patches.png, ...). --output writes the tensors
// token_relevance (B, T), patch_relevance (B, rows, cols), pixel_relevance (B, H, W),
// logits (B, classes), target (B), pixel_values (B, C, H, W).
// Started by torchrun, or with --jsonl, the images of --input are explained row by row over
// the ranks (explain_rows in rows.cpp): rank 0 writes --jsonl as rows finish and --json at
// the end; --png and --output (per-pixel tensors) are for one process.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/app/explain/explain_vim.h"
#include "csrc/app/explain/methods.h"
#include "csrc/io/image.h"
#include "csrc/io/safetensors.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {
namespace cli {
namespace {

// --input (safetensors with pixel_values) or --image (PNG/JPEG, preprocessed as timm does).
at::Tensor load_vim_inputs(const Args& a, const VimConfig& cfg) {
  if (!a.image.empty()) {
    const io::Image img = io::read_image(a.image, cfg.in_chans());
    return io::image_to_pixel_values(img, cfg.img_size(), cfg.crop_pct(), cfg.mean(), cfg.std(), !a.no_resize, a.image)
        .unsqueeze(0);  // (1, C, H, W)
  }
  auto f = io::SafetensorsFile::open(a.input);
  if (!f.contains("pixel_values"))
    throw io::InputError(a.input + ": no tensor 'pixel_values' (Vision Mamba models read images)");
  const auto& info = f.info("pixel_values");
  if (info.scalar_type != at::kFloat && info.scalar_type != at::kDouble)
    throw io::InputError(a.input + ": tensor 'pixel_values' must be F32 (or F64), got " + info.dtype);
  return f.load("pixel_values");
}

// "out.png" -> "out_patches.png"; row suffix "_<b>" first when there are several rows.
std::string png_name(const std::string& path, int64_t row, int64_t rows, bool patches) {
  const std::filesystem::path p(path);
  std::string stem = p.stem().string();
  if (rows > 1) stem += "_" + std::to_string(row);
  if (patches) stem += "_patches";
  const std::string ext = p.has_extension() ? p.extension().string() : ".png";
  return (p.parent_path() / (stem + ext)).string();
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

// One explanation object of the JSON output for row b of e (DESIGN.md §5: the token
// relevance in sequence order, the cls position and the patch grid; with the pixels, their
// sum and the share of the learned inputs).
nlohmann::json vim_explanation_json(const VimExplanation& e, int64_t b) {
  const std::vector<double> r = to_vector(e.token_relevance[b]);
  double sum = 0;
  for (double v : r) sum += v;
  nlohmann::json grid = nlohmann::json::array();
  for (int64_t i = 0; i < e.patch_relevance.size(1); ++i) grid.push_back(to_vector(e.patch_relevance[b][i]));
  nlohmann::json x = {{"target", e.targets[b].item<int64_t>()},
                      {"position", e.cls_position},
                      {"logit", e.logits[b].item<double>()},
                      {"relevance", r},
                      {"relevance_sum", sum},
                      {"cls_position", e.cls_position},
                      {"patch_relevance", grid}};
  if (e.pixel_relevance.defined()) {
    x["pixel_relevance_sum"] = e.pixel_relevance[b].sum().item<double>();
    x["constant_relevance"] = e.constant_relevance[b].item<double>();
  }
  return x;
}

// explain for a run started by torchrun or writing --jsonl: --batch-size images at a time over
// the ranks (explain_rows); rank 0 writes --jsonl as rows finish and --json at the end.
using ExplainPixelsFn = std::function<VimExplanation(const at::Tensor& rows, int64_t first_row)>;
int explain_vim_rows(const Args& a, const at::Tensor& pixels, const ExplainPixelsFn& explain) {
  if (a.resume && !a.json.empty())
    throw io::InputError("--resume writes only --jsonl (--json would miss the rows written before)");
  auto group = join_process_group(a);
  const int64_t rows = pixels.size(0);
  const std::vector<nlohmann::json> explanations =
      explain_rows(a, *group, rows, !a.json.empty() && group->rank() == 0, [&](int64_t first, int64_t count) {
        const VimExplanation e = explain(pixels.narrow(0, first, count), first);
        std::vector<nlohmann::json> out;
        for (int64_t b = 0; b < count; ++b) out.push_back(vim_explanation_json(e, b));
        return out;
      });
  if (group->rank() != 0) return 0;
  if (!a.json.empty()) {
    const nlohmann::json out = {{"model_type", "vim"}, {"method", a.method}, {"explanations", explanations}};
    write_output(a.json, out.dump(2) + "\n");
  }
  if (a.json != "-")
    std::printf("explained %lld images (method %s) in %d process%s%s%s\n", static_cast<long long>(rows),
                a.method.c_str(), group->size(), group->size() == 1 ? "" : "es", a.jsonl.empty() ? "" : " -> ",
                a.jsonl.c_str());
  return 0;
}

}  // namespace

int run_explain_vim(const Args& a) {
  const int sources = !a.input.empty() + !a.ids.empty() + a.has_text + !a.image.empty();
  if (!a.ids.empty() || a.has_text)
    throw io::InputError("Vision Mamba models read images: use --input FILE (pixel_values) or --image F.png");
  if (sources != 1) throw io::InputError("explain needs exactly one of --input, --image");
  const bool row_by_row = runs_row_by_row(a);
  if (row_by_row && (!a.png.empty() || !a.output.empty()))
    throw io::InputError("--png and --output (per-pixel relevance) are written by one process: run without torchrun "
                         "and --jsonl for them");
  if (a.dtype != "float32" && a.dtype != "float64")
    throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  // The LRP methods explain down to the pixels; smoothgrad, ig, attnroll, mambaattr and
  // random give token (and patch) relevance only.
  const bool baseline = is_vim_baseline_method(a.method);
  if (!is_vim_method(a.method) && !baseline)
    throw io::InputError("unknown method '" + a.method +
                     "' (expected mambalrp, gi, lrp-ln, mambalrp-no-silu, mambalrp-no-ssm, mambalrp-no-gate, "
                     "smoothgrad, ig, attnroll, mambaattr or random)");
  ExplainOptions baseline_opt;
  if (baseline) {
    if (!a.composite.empty() || a.zero_bias)
      throw io::InputError("--composite and --zero-bias apply to the LRP methods, not to " + a.method);
    if (!a.output.empty() || !a.png.empty())
      throw io::InputError("method " + a.method + " gives token relevance only: --output and --png need an LRP method");
    baseline_opt.method = a.method;
    set_method_options(a, baseline_opt);
    if (baseline_opt.ig_baseline_token >= 0) throw io::InputError("--ig-baseline takes only 'zero' for Vision Mamba models");
  }
  if (!a.position.empty()) throw io::InputError("--position does not apply to Vision Mamba models (the class logit is explained)");
  if (!a.html.empty()) throw io::InputError("--html is for language models; use --png for Vision Mamba models");
  if (a.no_resize && a.image.empty()) throw io::InputError("--no-resize applies to --image only");

  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const at::Device device = parse_device(row_by_row ? device_of_rank(a.device) : a.device, a.dtype);
  VimExplainOptions opt;
  opt.method = a.method;
  opt.zero_bias = a.zero_bias;
  opt.recompute = a.recompute;
  if (a.target != "argmax") opt.targets = {parse_int(a.target, "--target")};
  if (!a.composite.empty()) opt.composite = rules::Composite::from_file(a.composite);

  // The config first: a bad input is reported before the weights are read. An image's
  // header only (size within the limits): its pixels are decoded once the model has loaded.
  const std::filesystem::path model_path(a.model);
  const std::filesystem::path dir = std::filesystem::is_directory(model_path) ? model_path : model_path.parent_path();
  const VimConfig cfg = VimConfig::from_file((dir / "config.json").string());
  at::Tensor pixels;
  if (a.image.empty()) pixels = check_pixel_values(cfg, load_vim_inputs(a, cfg), dtype, a.input + ": pixel_values");
  else io::read_image_info(a.image);
  VisionMamba model = load_vision_mamba(a.model, dtype);
  model->to(device);
  if (!a.image.empty()) pixels = check_pixel_values(cfg, load_vim_inputs(a, cfg), dtype, a.image);
  auto explain = [&](const at::Tensor& rows, int64_t first_row) {
    ExplainOptions o = baseline_opt;
    o.first_row = first_row;  // the seeded methods draw per row (ExplainOptions::seed)
    return (baseline ? explain_vim_baseline(model, rows, opt.targets, o) : explain_vim(model, rows, opt)).cpu();
  };
  if (row_by_row) return explain_vim_rows(a, pixels, explain);
  const VimExplanation e = explain(pixels, 0);

  const int64_t batch = pixels.size(0);
  nlohmann::json out = {{"model_type", "vim"}, {"method", a.method}, {"explanations", nlohmann::json::array()}};
  for (int64_t b = 0; b < batch; ++b) out["explanations"].push_back(vim_explanation_json(e, b));
  if (!a.json.empty()) write_output(a.json, out.dump(2) + "\n");
  if (!a.output.empty())
    io::save_safetensors(a.output, {{"token_relevance", e.token_relevance.contiguous()},
                                    {"patch_relevance", e.patch_relevance.contiguous()},
                                    {"pixel_relevance", e.pixel_relevance.contiguous()},
                                    {"logits", e.class_logits.contiguous()},
                                    {"target", e.targets.contiguous()},
                                    {"pixel_values", pixels.contiguous()}});
  if (!a.png.empty()) {
    for (int64_t b = 0; b < batch; ++b) {
      const io::Image base = io::pixel_values_to_image(pixels[b], cfg.mean(), cfg.std());
      io::write_png(png_name(a.png, b, batch, false), io::heatmap_overlay(base, e.pixel_relevance[b]));
      const int64_t cell = std::max<int64_t>(1, cfg.img_size() / std::max<int64_t>(1, cfg.grid()));
      io::write_png(png_name(a.png, b, batch, true), io::heatmap_grid(e.patch_relevance[b], cell));
    }
  }
  if (a.json != "-") {
    for (int64_t b = 0; b < batch; ++b) {
      const auto& j = out["explanations"][b];
      const int64_t target = j["target"].get<int64_t>();
      const double p = at::softmax(e.class_logits[b].to(at::kDouble), -1)[target].item<double>();
      std::printf("row %lld: %s, p = %.4f, logit f = %.6g, sum R(tokens) = %.6g", static_cast<long long>(b),
                  class_name(dir, target).c_str(), p, j["logit"].get<double>(), j["relevance_sum"].get<double>());
      if (j.contains("pixel_relevance_sum")) std::printf(", sum R(pixels) = %.6g", j["pixel_relevance_sum"].get<double>());
      std::printf(" (method %s)\n", a.method.c_str());
    }
  }
  return 0;
}

}  // namespace cli
}  // namespace mamba_lrp
