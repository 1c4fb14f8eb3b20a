// mamba-lrp evaluate --model DIR --data FILE --methods a,b,c [--steps 11]
//     [--baseline unk|pad|ID|zero|mean] [--json OUT] [--markdown OUT] [--plot OUT.svg]
//     [--dtype float32|float64] [--batch-size N] [--samples N] [--noise F] [--ig-steps N]
//     [--ig-method M] [--ig-baseline zero|ID] [--seed N]
// Token flipping for Mamba models, patch flipping for Vision Mamba (csrc/app/eval/flipping.h
// defines the curves and areas); a progress bar on stderr; the Markdown table on stdout.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "csrc/app/cli/cli.h"
#include "csrc/io/errors.h"
#include "csrc/app/eval/flipping.h"
#include "csrc/app/eval/report.h"
#include "csrc/app/explain/explain.h"
#include "csrc/app/explain/explain_vim.h"
#include "csrc/app/explain/methods.h"
#include "csrc/io/safetensors.h"
#include "csrc/io/tokenizer.h"
#include "models/mamba.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {
namespace cli {
namespace {

struct EvalArgs {
  Args common;  // model, dtype, json and the method options
  std::string data, methods, steps = "11", baseline = "zero", markdown, plot;
};

EvalArgs parse_eval_args(int argc, char** argv) {
  EvalArgs e;
  Args& a = e.common;
  a.command = "evaluate";
  const std::map<std::string, std::string*> values = {
      {"--model", &a.model},         {"--data", &e.data},           {"--methods", &e.methods},
      {"--steps", &e.steps},         {"--baseline", &e.baseline},   {"--json", &a.json},
      {"--markdown", &e.markdown},   {"--plot", &e.plot},           {"--dtype", &a.dtype},
      {"--batch-size", &a.batch_size}, {"--samples", &a.samples},   {"--noise", &a.noise},
      {"--ig-steps", &a.ig_steps},   {"--ig-method", &a.ig_method}, {"--ig-baseline", &a.ig_baseline},
      {"--seed", &a.seed},           {"--device", &a.device},       {"--timeout", &a.timeout}};
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    auto it = values.find(flag);
    if (it == values.end()) throw io::InputError("evaluate: unknown option '" + flag + "'");
    if (i + 1 >= argc) throw io::InputError("option " + flag + " needs a value");
    *it->second = argv[++i];
  }
  if (a.model.empty() || e.data.empty() || e.methods.empty())
    throw io::InputError("evaluate needs --model DIR, --data FILE and --methods a,b,c");
  if (a.dtype != "float32" && a.dtype != "float64")
    throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  return e;
}

std::vector<std::string> split_methods(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) throw io::InputError("--methods: empty entry in '" + s + "'");
    if (std::find(out.begin(), out.end(), item) != out.end()) throw io::InputError("--methods: '" + item + "' given twice");
    out.push_back(item);
  }
  if (out.empty()) throw io::InputError("--methods: no method given");
  return out;
}

// A progress bar on stderr: "  method [#####.....] 50/100".
struct Progress {
  std::string label;
  bool quiet = false;  // ranks other than 0 of a torchrun start
  void operator()(int64_t done, int64_t total) const {
    if (quiet) return;
    const int width = 30, filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    std::fprintf(stderr, "\r  %-18s [%s%s] %lld/%lld", label.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
};

// Labels (B) from the data file, checked against the number of outputs; undefined if absent.
at::Tensor load_labels(const io::SafetensorsFile& f, const std::string& path, int64_t batch, int64_t outputs) {
  if (!f.contains("labels")) return {};
  const auto& info = f.info("labels");
  if (info.scalar_type != at::kLong && info.scalar_type != at::kInt)
    throw io::InputError(path + ": tensor 'labels' must be I64 or I32, got " + info.dtype);
  at::Tensor labels = f.load("labels").to(at::kLong).flatten();
  if (labels.numel() != batch)
    throw io::InputError(path + ": tensor 'labels' must hold one label per row (" + std::to_string(batch) + "), got " +
                     std::to_string(labels.numel()));
  if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= outputs)
    throw io::InputError(path + ": tensor 'labels': a label is outside [0, " + std::to_string(outputs) + ")");
  return labels;
}

std::vector<int64_t> to_ids(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The token id named by --baseline unk|pad|ID, from config.json or tokenizer.json.
int64_t baseline_token(const std::string& which, const std::filesystem::path& dir, int64_t vocab) {
  int64_t id = -1;
  if (which == "unk" || which == "pad") {
    const std::string key = which + "_token_id";
    std::ifstream f(dir / "config.json");
    nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_object() && j.contains(key) && j[key].is_number_integer()) id = j[key].get<int64_t>();
    if (id < 0 && which == "unk" && std::filesystem::exists(dir / "tokenizer.json")) {
      std::ifstream t(dir / "tokenizer.json");
      nlohmann::json tj = nlohmann::json::parse(t, nullptr, false);
      if (tj.is_object() && tj.contains("model") && tj["model"].is_object() && tj["model"].contains("unk_token") &&
          tj["model"]["unk_token"].is_string()) {
        const auto tok = io::BpeTokenizer::from_file((dir / "tokenizer.json").string());
        id = tok.token_to_id(tj["model"]["unk_token"].get<std::string>());
      }
    }
    if (id < 0)
      throw io::InputError("--baseline " + which + ": the model names no " + which +
                       " token (config.json '" + key + "'" + (which == "unk" ? " or tokenizer.json's unk_token" : "") +
                       "); give a token id or zero/mean");
  } else {
    id = parse_int(which, "--baseline (unk, pad, a token id, zero or mean)");
  }
  if (id < 0 || id >= vocab)
    throw io::InputError("--baseline: token " + std::to_string(id) + " is outside the vocabulary [0, " +
                     std::to_string(vocab) + ")");
  return id;
}

void write_outputs(const EvalArgs& e, const eval::Report& report) {
  if (!e.common.json.empty()) write_output(e.common.json, eval::report_json(report).dump(2) + "\n");
  if (!e.markdown.empty()) write_output(e.markdown, eval::report_markdown(report));
  if (!e.plot.empty()) write_output(e.plot, eval::report_svg(report));
  if (e.common.json != "-") std::cout << eval::report_markdown(report);
}

// The report's description of the run; the methods' results are added to it.
eval::Report new_report(const EvalArgs& e, const char* model_type, const char* unit, int64_t rows, int64_t steps) {
  eval::Report report;
  report.model = e.common.model;
  report.data = e.data;
  report.model_type = model_type;
  report.unit = unit;
  report.baseline = e.baseline;
  report.rows = rows;
  report.steps = steps;
  return report;
}

// ---- torchrun: rows split over the ranks ------------------------------------------------------

// This process's rows [begin, end) of `rows`, and its group: every row for one process.
struct RankRows {
  std::unique_ptr<distributed::ProcessGroup> group;
  int64_t begin = 0, end = 0;
};
RankRows split_rows(const Args& a, int64_t rows) {
  RankRows r;
  r.group = join_process_group(a);
  if (rows < r.group->size())
    throw io::InputError("--data has " + std::to_string(rows) + " rows, fewer than the " +
                         std::to_string(r.group->size()) + " processes torchrun started");
  std::tie(r.begin, r.end) = distributed::row_block(rows, r.group->rank(), r.group->size());
  return r;
}

// Every rank's curves and conservation points (each for its block of rows), joined in rank
// order, so in row order, on every rank: the report one process would have made.
void gather_report(distributed::ProcessGroup& group, eval::Report& report) {
  if (group.size() == 1) return;
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& m : report.methods) {
    const at::Tensor c = m.curves.to(at::kDouble).contiguous();  // (4, n, S)
    mine.push_back({{"rows", c.size(1)}, {"curves", std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel())}});
  }
  for (const auto& c : report.conservation) mine.push_back({{"sum", c.relevance_sum}, {"logit", c.logit}});
  const std::vector<std::string> all = group.all_gather(mine.dump());  // doubles round-trip through JSON exactly
  std::vector<at::ScalarType> dtypes;  // each method's curves go back to their own dtype (exactly: they came from it)
  for (auto& m : report.methods) dtypes.push_back(m.curves.scalar_type()), m.curves = at::Tensor();
  for (auto& c : report.conservation) c.relevance_sum.clear(), c.logit.clear();
  for (const std::string& text : all) {
    const nlohmann::json theirs = nlohmann::json::parse(text);
    size_t k = 0;
    for (auto& m : report.methods) {
      const auto& x = theirs[k];
      const std::vector<double> v = x["curves"].get<std::vector<double>>();
      const at::Tensor c =
          at::tensor(v, at::kDouble).reshape({4, x["rows"].get<int64_t>(), report.steps}).to(dtypes[k++]);
      m.curves = m.curves.defined() ? at::cat({m.curves, c}, 1) : c;
    }
    for (auto& c : report.conservation) {
      const auto& x = theirs[k++];
      for (double v : x["sum"].get<std::vector<double>>()) c.relevance_sum.push_back(v);
      for (double v : x["logit"].get<std::vector<double>>()) c.logit.push_back(v);
    }
  }
}

// ---- Mamba language models: token flipping ------------------------------------------------

int evaluate_lm(const EvalArgs& e, const std::vector<std::string>& methods, int64_t steps) {
  const Args& a = e.common;
  const std::filesystem::path dir(a.model);
  if (!std::filesystem::is_directory(dir)) throw io::InputError(a.model + ": not a model directory");
  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const at::Device device = parse_device(device_of_rank(a.device), a.dtype);  // the model's; ids, mask, relevance stay on the CPU
  ExplainOptions base_opt;
  set_method_options(a, base_opt);
  for (const auto& m : methods)
    if (!is_lm_method(m) || m == "standard")
      throw io::InputError("--methods: unknown method '" + m + "' for Mamba language models");

  // Data.
  auto f = io::SafetensorsFile::open(e.data);
  if (!f.contains("input_ids"))
    throw io::InputError(e.data + ": no tensor 'input_ids' (token flipping for Mamba models reads token ids)");
  const auto& info = f.info("input_ids");
  if (info.scalar_type != at::kLong && info.scalar_type != at::kInt)
    throw io::InputError(e.data + ": tensor 'input_ids' must be I64 or I32, got " + info.dtype);
  at::Tensor ids = f.load("input_ids").to(at::kLong);
  if (ids.dim() == 1) ids = ids.unsqueeze(0);
  if (ids.dim() != 2 || ids.size(0) < 1 || ids.size(1) < 1)
    throw io::InputError(e.data + ": tensor 'input_ids' must have shape (B, L) with B, L >= 1");
  const int64_t all_rows = ids.size(0), L = ids.size(1);
  at::Tensor mask;
  if (f.contains("attention_mask")) {
    mask = f.load("attention_mask").to(at::kLong);
    if (mask.dim() == 1) mask = mask.unsqueeze(0);
    if (mask.sizes() != ids.sizes()) throw io::InputError(e.data + ": tensor 'attention_mask' must have the shape of input_ids");
    if (((mask != 0) & (mask != 1)).any().item<bool>()) throw io::InputError(e.data + ": tensor 'attention_mask' must hold only 0 and 1");
    if ((mask.select(1, L - 1) == 0).any().item<bool>())
      throw io::InputError(e.data + ": every row must end with a real token (left padding): the last position is explained");
  }
  MambaForCausalLM model = load_mamba_lm(a.model, dtype);
  model->to(device);
  const int64_t vocab = model->config().vocab_size(), outputs = model->config().num_outputs();
  if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= vocab)
    throw io::InputError(e.data + ": a token id is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  at::Tensor labels = load_labels(f, e.data, all_rows, outputs);
  // This process's rows (all of them without torchrun).
  const RankRows part = split_rows(a, all_rows);
  const int64_t B = part.end - part.begin, first_row = part.begin;
  ids = ids.narrow(0, first_row, B);
  if (mask.defined()) mask = mask.narrow(0, first_row, B);
  if (labels.defined()) labels = labels.narrow(0, first_row, B);

  // Baseline embedding (H).
  at::Tensor embeds, baseline;
  {
    torch::NoGradGuard g;
    embeds = model->embed(ids.to(device));  // (B, L, H)
    const at::Tensor table = model->backbone->embeddings->weight;  // (V, H)
    if (e.baseline == "zero") baseline = at::zeros({table.size(1)}, table.options());
    else if (e.baseline == "mean") baseline = table.mean(0);
    else baseline = table[baseline_token(e.baseline, dir, vocab)].clone();
  }
  const at::Tensor mask_f = mask.defined() ? mask.to(device, dtype) : at::Tensor();
  const int64_t chunk = base_opt.batch_size;

  // Targets: the labels, else the argmax at the last position of the clean input.
  at::Tensor targets;
  {
    torch::NoGradGuard g;
    std::vector<at::Tensor> parts;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
      const int64_t n = std::min(chunk, B - b0);
      const at::Tensor mk = mask_f.defined() ? mask_f.narrow(0, b0, n) : at::Tensor();
      parts.push_back(model->head(model->hidden_states(embeds.narrow(0, b0, n), mk).select(1, L - 1)).argmax(-1));
    }
    targets = labels.defined() ? labels.to(device) : at::cat(parts);
  }
  const eval::ScoreFn score = [&](const at::Tensor& x, const at::Tensor& rows, const at::Tensor& valid_rows) {
    torch::NoGradGuard g;
    const at::Tensor mk = valid_rows.to(dtype);
    const at::Tensor at_pos = model->head(model->hidden_states(x, mk).select(1, L - 1));  // (n, V)
    return at_pos.gather(1, targets.index_select(0, rows).unsqueeze(1)).squeeze(1);
  };
  auto relevance_of = [&](const std::string& method, bool zero_bias, at::Tensor* logits) {
    std::vector<at::Tensor> rel, fs;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
      const int64_t n = std::min(chunk, B - b0);
      ExplainOptions opt = base_opt;
      opt.method = method;
      opt.first_row = first_row + b0;  // per-row random streams (ExplainOptions::seed)
      opt.zero_bias = zero_bias;
      opt.targets = to_ids(targets.narrow(0, b0, n));
      const Explanation ex = explain(model, ids.narrow(0, b0, n), mask.defined() ? mask.narrow(0, b0, n) : at::Tensor(), opt);
      rel.push_back(ex.relevance);
      fs.push_back(ex.logits);
    }
    if (logits) *logits = at::cat(fs);
    return at::cat(rel).cpu();
  };

  eval::Report report = new_report(e, model->config().is_mamba2() ? "mamba2" : "mamba", "token", all_rows, steps);
  const at::Tensor valid = mask.defined() ? mask.to(at::kBool) : at::Tensor();
  for (const auto& m : methods) {
    const at::Tensor rel = relevance_of(m, false, nullptr);
    Progress bar{m, part.group->rank() != 0};
    report.methods.push_back({m, eval::flip_curves(embeds, baseline, valid, rel, steps, chunk, /*pack_insertions=*/true, score, bar)});
  }
  // Figure 3: sum R against f with every bias zero, for MambaLRP and GI.
  if (std::find(methods.begin(), methods.end(), "mambalrp") != methods.end() &&
      std::find(methods.begin(), methods.end(), "gi") != methods.end()) {
    for (const std::string m : {"mambalrp", "gi"}) {
      at::Tensor f0;
      const at::Tensor rel = relevance_of(m, true, &f0);
      eval::ConservationPoints c;
      c.method = m;
      for (int64_t b = 0; b < B; ++b) {
        c.relevance_sum.push_back(rel[b].sum().item<double>());
        c.logit.push_back(f0[b].item<double>());
      }
      report.conservation.push_back(std::move(c));
    }
  }
  gather_report(*part.group, report);
  if (part.group->rank() == 0) write_outputs(e, report);
  return 0;
}

// ---- Vision Mamba: patch flipping ---------------------------------------------------------------

int evaluate_vim(const EvalArgs& e, const std::vector<std::string>& methods, int64_t steps) {
  const Args& a = e.common;
  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const at::Device device = parse_device(device_of_rank(a.device), a.dtype);  // the model's; ids, mask, relevance stay on the CPU
  ExplainOptions base_opt;
  set_method_options(a, base_opt);
  for (const auto& m : methods)
    if ((!is_vim_method(m) && !is_vim_baseline_method(m)) || m == "standard")
      throw io::InputError("--methods: method '" + m + "' is not available for Vision Mamba models");
  if (e.baseline != "zero" && e.baseline != "mean")
    throw io::InputError("--baseline for Vision Mamba models must be zero or mean (pixel values), got '" + e.baseline + "'");

  auto f = io::SafetensorsFile::open(e.data);
  if (!f.contains("pixel_values"))
    throw io::InputError(e.data + ": no tensor 'pixel_values' (patch flipping for Vision Mamba reads images)");
  const auto& info = f.info("pixel_values");
  if (!at::isFloatingType(info.scalar_type))
    throw io::InputError(e.data + ": tensor 'pixel_values' must be floating point, got " + info.dtype);
  VisionMamba model = load_vision_mamba(a.model, dtype);
  model->to(device);
  const VimConfig& cfg = model->config();
  if (!model->head) throw io::InputError("the model has no classification head (num_classes is 0): nothing to evaluate");
  const int64_t p = cfg.patch_size(), g = cfg.grid(), C = cfg.in_chans();
  if (cfg.stride() != p || g * p != cfg.img_size())
    throw io::InputError("patch flipping needs non-overlapping patches covering the image (stride = patch_size)");
  const at::Tensor all_pixels =
      check_pixel_values(cfg, f.load("pixel_values"), dtype, e.data + ": pixel_values").to(device);  // (B, C, H, W)
  const int64_t all_rows = all_pixels.size(0), P = g * g, F = C * p * p;
  at::Tensor labels = load_labels(f, e.data, all_rows, cfg.num_classes());
  // This process's rows (all of them without torchrun).
  const RankRows part = split_rows(a, all_rows);
  const int64_t B = part.end - part.begin, first_row = part.begin;
  const at::Tensor pixels = all_pixels.narrow(0, first_row, B);
  if (labels.defined()) labels = labels.narrow(0, first_row, B);
  // Units: patches in row-major grid order, each its C p p pixels.
  auto to_units = [&](const at::Tensor& x) {  // (n, C, H, W) -> (n, P, F)
    return x.reshape({x.size(0), C, g, p, g, p}).permute({0, 2, 4, 1, 3, 5}).reshape({x.size(0), P, F});
  };
  auto to_pixels = [&](const at::Tensor& u) {  // (n, P, F) -> (n, C, H, W)
    return u.reshape({u.size(0), g, g, C, p, p}).permute({0, 3, 1, 4, 2, 5}).reshape({u.size(0), C, g * p, g * p});
  };
  const at::Tensor units = to_units(pixels);
  at::Tensor baseline;
  if (e.baseline == "zero") baseline = at::zeros({F}, pixels.options());
  else baseline = to_units(pixels.mean({2, 3}, true).expand_as(pixels).contiguous());  // per image and channel
  const int64_t chunk = base_opt.batch_size;
  at::Tensor targets;
  {
    torch::NoGradGuard ng;
    std::vector<at::Tensor> parts;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) parts.push_back(model->forward(pixels.narrow(0, b0, std::min(chunk, B - b0))).argmax(-1));
    targets = labels.defined() ? labels.to(device) : at::cat(parts);
  }
  const eval::ScoreFn score = [&](const at::Tensor& x, const at::Tensor& rows, const at::Tensor&) {
    torch::NoGradGuard ng;
    return model->forward(to_pixels(x)).gather(1, targets.index_select(0, rows).unsqueeze(1)).squeeze(1);
  };
  auto relevance_of = [&](const std::string& method, bool zero_bias, at::Tensor* logits, at::Tensor* token_sums) {
    std::vector<at::Tensor> rel, fs, sums;
    if (is_vim_baseline_method(method)) {
      for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        const int64_t n = std::min(chunk, B - b0);
        ExplainOptions opt = base_opt;
        opt.method = method;
        opt.first_row = first_row + b0;  // per-row random streams (ExplainOptions::seed)
        const VimExplanation ex = explain_vim_baseline(model, pixels.narrow(0, b0, n), to_ids(targets.narrow(0, b0, n)), opt);
        rel.push_back(ex.patch_relevance.reshape({n, P}));
      }
      return at::cat(rel).cpu();
    }
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
      const int64_t n = std::min(chunk, B - b0);
      VimExplainOptions opt;
      opt.method = method;
      opt.zero_bias = zero_bias;
      opt.pixels = false;
      opt.targets = to_ids(targets.narrow(0, b0, n));
      const VimExplanation ex = explain_vim(model, pixels.narrow(0, b0, n), opt);
      rel.push_back(ex.patch_relevance.reshape({n, P}));
      fs.push_back(ex.logits);
      sums.push_back(ex.token_relevance.sum(1));
    }
    if (logits) *logits = at::cat(fs);
    if (token_sums) *token_sums = at::cat(sums);
    return at::cat(rel).cpu();
  };
  eval::Report report = new_report(e, "vim", "patch", all_rows, steps);
  for (const auto& m : methods) {
    const at::Tensor rel = relevance_of(m, false, nullptr, nullptr);
    Progress bar{m, part.group->rank() != 0};
    report.methods.push_back({m, eval::flip_curves(units, baseline, at::Tensor(), rel, steps, chunk, /*pack_insertions=*/false, score, bar)});
  }
  if (std::find(methods.begin(), methods.end(), "mambalrp") != methods.end() &&
      std::find(methods.begin(), methods.end(), "gi") != methods.end()) {
    for (const std::string m : {"mambalrp", "gi"}) {
      at::Tensor f0, sums;
      relevance_of(m, true, &f0, &sums);  // conservation over the whole token sequence (cls and pos_embed included)
      eval::ConservationPoints c;
      c.method = m;
      for (int64_t b = 0; b < B; ++b) {
        c.relevance_sum.push_back(sums[b].item<double>());
        c.logit.push_back(f0[b].item<double>());
      }
      report.conservation.push_back(std::move(c));
    }
  }
  gather_report(*part.group, report);
  if (part.group->rank() == 0) write_outputs(e, report);
  return 0;
}

}  // namespace

int run_evaluate(int argc, char** argv) {
  const EvalArgs e = parse_eval_args(argc, argv);
  const std::vector<std::string> methods = split_methods(e.methods);
  const int64_t steps = parse_int(e.steps, "--steps");
  if (steps < 2) throw io::InputError("--steps must be at least 2 (the fractions 0 and 1)");
  if (!std::filesystem::exists(e.data)) throw io::InputError(e.data + ": no such file");
  return read_model_type(e.common.model) == "vim" ? evaluate_vim(e, methods, steps) : evaluate_lm(e, methods, steps);
}

}  // namespace cli
}  // namespace mamba_lrp
