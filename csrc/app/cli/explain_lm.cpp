// mamba-lrp explain / forward for Mamba language models.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/app/explain/explain.h"
#include "csrc/app/explain/html_report.h"
#include "csrc/app/explain/methods.h"
#include "csrc/io/safetensors.h"
#include "csrc/io/tokenizer.h"
#include "models/mamba.h"

namespace mamba_lrp {
namespace cli {
LmInputs load_lm_inputs(const Args& a, const std::filesystem::path& dir) {
  LmInputs in;
  const auto tok_path = dir / "tokenizer.json";
  if (a.has_text) {
    if (!std::filesystem::exists(tok_path)) throw io::InputError(tok_path.string() + ": --text needs the model's tokenizer.json");
    in.tokenizer = std::make_unique<mamba_lrp::io::BpeTokenizer>(mamba_lrp::io::BpeTokenizer::from_file(tok_path.string()));
    std::vector<int64_t> v = in.tokenizer->encode(a.text);
    if (v.empty()) throw io::InputError("--text: the text encodes to no tokens");
    in.ids = torch::tensor(v, at::kLong).unsqueeze(0);
  } else if (!a.ids.empty()) {
    in.ids = torch::tensor(parse_id_list(a.ids), at::kLong).unsqueeze(0);
  } else {
    auto f = mamba_lrp::io::SafetensorsFile::open(a.input);
    if (!f.contains("input_ids")) throw io::InputError(a.input + ": no tensor 'input_ids' (Mamba models read token ids)");
    const auto& info = f.info("input_ids");
    if (info.scalar_type != at::kLong && info.scalar_type != at::kInt)
      throw io::InputError(a.input + ": tensor 'input_ids' must be I64 or I32, got " + info.dtype);
    in.ids = f.load("input_ids").to(at::kLong);
    if (in.ids.dim() == 1) in.ids = in.ids.unsqueeze(0);
    if (in.ids.dim() != 2) throw io::InputError(a.input + ": tensor 'input_ids' must have shape (B, L) or (L)");
    if (f.contains("attention_mask")) {
      in.mask = f.load("attention_mask").to(at::kLong);
      if (in.mask.dim() == 1) in.mask = in.mask.unsqueeze(0);
      if (in.mask.sizes() != in.ids.sizes()) throw io::InputError(a.input + ": tensor 'attention_mask' must have the shape of input_ids");
    }
  }
  if (!in.tokenizer && std::filesystem::exists(tok_path))
    in.tokenizer = std::make_unique<mamba_lrp::io::BpeTokenizer>(mamba_lrp::io::BpeTokenizer::from_file(tok_path.string()));

  return in;
}

namespace {

// One explanation object of the JSON output ({"target", "position", "logit", "relevance",
// "relevance_sum"}) for row b of e.
nlohmann::json explanation_json(const mamba_lrp::Explanation& e, int64_t b) {
  const at::Tensor rel = e.relevance[b].to(at::kDouble).contiguous();
  std::vector<double> r(rel.data_ptr<double>(), rel.data_ptr<double>() + rel.numel());
  double sum = 0;
  for (double v : r) sum += v;
  return {{"target", e.targets[b].item<int64_t>()},
          {"position", e.positions[b].item<int64_t>()},
          {"logit", e.logits[b].item<double>()},
          {"relevance", r},
          {"relevance_sum", sum}};
}

// explain for a run started by torchrun or writing --jsonl: --batch-size rows at a time, over
// the ranks (explain_rows); rank 0 writes --jsonl as rows finish and --json / --html at the end.
int explain_lm_rows(const Args& a, mamba_lrp::MambaForCausalLM& model, const LmInputs& in,
                    const mamba_lrp::ExplainOptions& opt) {
  if (a.resume && (!a.json.empty() || !a.html.empty()))
    throw io::InputError("--resume writes only --jsonl (--json and --html would miss the rows written before)");
  if (!a.html.empty() && in.ids.size(0) > 1000)
    throw io::InputError("--html is for up to 1000 rows; use --jsonl for " + std::to_string(in.ids.size(0)));
  auto group = join_process_group(a);
  const bool keep = !a.json.empty() || !a.html.empty();
  const std::vector<nlohmann::json> explanations =
      explain_rows(a, *group, in.ids.size(0), keep && group->rank() == 0, [&](int64_t first, int64_t count) {
        mamba_lrp::ExplainOptions o = opt;
        o.first_row = first;
        const at::Tensor mask = in.mask.defined() ? in.mask.narrow(0, first, count) : at::Tensor();
        const mamba_lrp::Explanation e = mamba_lrp::explain(model, in.ids.narrow(0, first, count), mask, o).cpu();
        std::vector<nlohmann::json> out;
        for (int64_t b = 0; b < count; ++b) out.push_back(explanation_json(e, b));
        return out;
      });
  if (group->rank() != 0) return 0;
  if (!a.json.empty()) {
    const nlohmann::json out = {{"model_type", model->config().is_mamba2() ? "mamba2" : "mamba"},
                                {"method", a.method},
                                {"explanations", explanations}};
    write_output(a.json, out.dump(2) + "\n");
  }
  if (!a.html.empty()) {
    const bool classifier = model->config().num_outputs() != model->config().vocab_size();
    std::vector<mamba_lrp::TextHeatmapRow> rows;
    for (size_t b = 0; b < explanations.size(); ++b) {
      const nlohmann::json& x = explanations[b];
      mamba_lrp::TextHeatmapRow row;
      for (int64_t i = 0; i < in.ids.size(1); ++i) {
        const int64_t id = in.ids[static_cast<int64_t>(b)][i].item<int64_t>();
        row.tokens.push_back(in.tokenizer && id < in.tokenizer->vocab_size() ? in.tokenizer->decode(id)
                                                                             : "[" + std::to_string(id) + "]");
      }
      row.relevance = x["relevance"].get<std::vector<double>>();
      row.target_label = (classifier ? "class " : "token ") + std::to_string(x["target"].get<int64_t>());
      row.logit = x["logit"].get<double>();
      row.relevance_sum = x["relevance_sum"].get<double>();
      rows.push_back(std::move(row));
    }
    write_output(a.html, mamba_lrp::text_heatmap_html("MambaLRP explanation: " + a.model, a.method, rows));
  }
  if (a.json != "-")
    std::printf("explained %lld rows (method %s) in %d process%s%s%s\n", static_cast<long long>(in.ids.size(0)),
                a.method.c_str(), group->size(), group->size() == 1 ? "" : "es", a.jsonl.empty() ? "" : " -> ",
                a.jsonl.c_str());
  return 0;
}

}  // namespace

void set_method_options(const Args& a, mamba_lrp::ExplainOptions& opt) {
  if (!a.samples.empty()) opt.samples = parse_int(a.samples, "--samples");
  if (opt.samples < 1) throw io::InputError("--samples must be at least 1");
  if (!a.noise.empty()) opt.noise = parse_double(a.noise, "--noise");
  if (opt.noise < 0) throw io::InputError("--noise must be non-negative");
  if (!a.ig_steps.empty()) opt.ig_steps = parse_int(a.ig_steps, "--ig-steps");
  if (opt.ig_steps < 1) throw io::InputError("--ig-steps must be at least 1");
  if (!a.ig_method.empty()) opt.ig_method = a.ig_method;
  mamba_lrp::ig_nodes(opt.ig_method, std::max<int64_t>(opt.ig_steps, 2));  // checks the name
  if (!a.ig_baseline.empty() && a.ig_baseline != "zero") {
    opt.ig_baseline_token = parse_int(a.ig_baseline, "--ig-baseline (zero or a token id)");
    if (opt.ig_baseline_token < 0) throw io::InputError("--ig-baseline must be zero or a token id >= 0");
  }
  if (!a.seed.empty()) {
    const int64_t s = parse_int(a.seed, "--seed");
    if (s < 0) throw io::InputError("--seed must be non-negative");
    opt.seed = static_cast<uint64_t>(s);
  }
  if (!a.batch_size.empty()) opt.batch_size = parse_int(a.batch_size, "--batch-size");
  if (opt.batch_size < 1) throw io::InputError("--batch-size must be at least 1");
}

int run_explain_lm(const Args& a) {
  if (a.model.empty()) throw io::InputError("explain needs --model DIR");
  const int sources = !a.input.empty() + !a.ids.empty() + a.has_text + !a.image.empty();
  if (sources != 1) throw io::InputError("explain needs exactly one of --input, --ids, --text, --image");
  if (a.dtype != "float32" && a.dtype != "float64")
    throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  if (!mamba_lrp::is_lm_method(a.method))
    throw io::InputError("unknown method '" + a.method +
                     "' (expected mambalrp, gi, lrp-ln, mambalrp-no-silu, mambalrp-no-ssm, mambalrp-no-gate, smoothgrad, "
                     "ig, attnroll, mambaattr or random)");
  if (!a.png.empty()) throw io::InputError("--png is for Vision Mamba models");
  const std::filesystem::path dir(a.model);
  if (!std::filesystem::is_directory(dir)) throw io::InputError(a.model + ": not a model directory");
  if (!a.image.empty()) throw io::InputError("--image needs a Vision Mamba model");

  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const bool row_by_row = runs_row_by_row(a);
  const at::Device device = parse_device(row_by_row ? device_of_rank(a.device) : a.device, a.dtype);
  mamba_lrp::ExplainOptions opt;
  opt.method = a.method;
  opt.zero_bias = a.zero_bias;
  opt.recompute = a.recompute;
  if (!a.position.empty()) opt.position = parse_int(a.position, "--position");
  if (a.target != "argmax") opt.targets = {parse_int(a.target, "--target")};
  if (!a.composite.empty()) opt.composite = mamba_lrp::rules::Composite::from_file(a.composite);
  set_method_options(a, opt);

  LmInputs in = load_lm_inputs(a, dir);
  const at::Tensor& ids = in.ids;
  auto& tokenizer = in.tokenizer;
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(a.model, dtype);
  model->to(device);
  if (row_by_row) return explain_lm_rows(a, model, in, opt);
  const mamba_lrp::Explanation e = mamba_lrp::explain(model, ids, in.mask, opt).cpu();

  // Outputs.
  const bool classifier = model->config().num_outputs() != model->config().vocab_size();
  auto token_text = [&](int64_t id) -> std::string {
    return tokenizer && id < tokenizer->vocab_size() ? tokenizer->decode(id) : "[" + std::to_string(id) + "]";
  };
  nlohmann::json out = {{"model_type", model->config().is_mamba2() ? "mamba2" : "mamba"}, {"method", a.method}, {"explanations", nlohmann::json::array()}};
  std::vector<mamba_lrp::TextHeatmapRow> rows;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const nlohmann::json x = explanation_json(e, b);
    out["explanations"].push_back(x);
    const std::vector<double> r = x["relevance"].get<std::vector<double>>();
    const double sum = x["relevance_sum"].get<double>();
    const int64_t target = e.targets[b].item<int64_t>();
    mamba_lrp::TextHeatmapRow row;
    for (int64_t i = 0; i < ids.size(1); ++i) row.tokens.push_back(token_text(ids[b][i].item<int64_t>()));
    row.relevance = r;
    row.target_label = classifier ? "class " + std::to_string(target)
                                  : "token " + std::to_string(target) + (tokenizer ? " '" + token_text(target) + "'" : "");
    row.logit = e.logits[b].item<double>();
    row.relevance_sum = sum;
    rows.push_back(std::move(row));
  }
  if (!a.json.empty()) write_output(a.json, out.dump(2) + "\n");
  if (!a.html.empty())
    write_output(a.html, mamba_lrp::text_heatmap_html("MambaLRP explanation: " + a.model, a.method, rows));
  if (a.json != "-") {
    // A short human summary: per row the target (a classifier's: its label and probability),
    // f, sum R and the most relevant tokens.
    at::Tensor probabilities;  // (B, classes)
    if (classifier) {
      torch::NoGradGuard no_grad;
      const at::Tensor m = in.mask.defined() ? in.mask.to(dtype) : at::Tensor();
      probabilities = at::softmax(model->forward(ids, m).select(1, e.positions[0].item<int64_t>()), -1).to(at::kDouble);
    }
    for (size_t b = 0; b < rows.size(); ++b) {
      const auto& row = rows[b];
      if (classifier) {
        const int64_t target = e.targets[b].item<int64_t>();
        std::printf("row %zu: %s, p = %.4f, logit f = %.6g, sum R = %.6g (method %s)\n", b,
                    class_name(dir, target).c_str(), probabilities[b][target].item<double>(), row.logit,
                    row.relevance_sum, a.method.c_str());
      } else {
        std::printf("row %zu: target %s, logit f = %.6g, sum R = %.6g (method %s)\n", b, row.target_label.c_str(),
                    row.logit, row.relevance_sum, a.method.c_str());
      }
      std::vector<size_t> order(row.relevance.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return row.relevance[x] > row.relevance[y]; });
      std::printf("  most relevant tokens:");
      for (size_t k = 0; k < std::min<size_t>(5, order.size()); ++k)
        std::printf(" %s (%.4g)", nlohmann::json(row.tokens[order[k]]).dump().c_str(), row.relevance[order[k]]);
      std::printf("\n");
    }
  }
  return 0;
}

// mamba-lrp forward --model DIR (--input|--ids|--text) [--dtype] --output OUT.safetensors
// Writes the logits (B, L, V) of the unmodified forward as tensor "logits".
int run_forward_lm(const Args& a) {
  if (a.model.empty() || a.output.empty()) throw io::InputError("forward needs --model DIR and --output FILE");
  if (a.dtype != "float32" && a.dtype != "float64")
    throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  const std::filesystem::path dir(a.model);
  if (!std::filesystem::is_directory(dir)) throw io::InputError(a.model + ": not a model directory");
  const at::Device device = parse_device(a.device, a.dtype);
  LmInputs in = load_lm_inputs(a, dir);
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(a.model, a.dtype == "float64" ? at::kDouble : at::kFloat);
  model->to(device);
  if (in.ids.min().item<int64_t>() < 0 || in.ids.max().item<int64_t>() >= model->config().vocab_size())
    throw io::InputError("a token id is outside the vocabulary [0, " + std::to_string(model->config().vocab_size()) + ")");
  torch::NoGradGuard no_grad;
  at::Tensor mask =
      in.mask.defined() ? in.mask.to(device, a.dtype == "float64" ? at::kDouble : at::kFloat) : at::Tensor();
  const at::Tensor logits = model->forward(in.ids.to(device), mask).cpu().contiguous();
  mamba_lrp::io::save_safetensors(a.output, {{"logits", logits}});
  return 0;
}

}  // namespace cli
}  // namespace mamba_lrp
