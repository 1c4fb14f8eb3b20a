// mamba-lrp generate: greedy decoding with a Mamba language model (the recurrent state
// carried from token to token), and with --explain the MambaLRP explanation of every
// generated token over its context (csrc/app/generate/generate.h).
//
//   mamba-lrp generate --model DIR (--ids 1,2,3 | --text "..." | --input FILE) --max-new-tokens N
//       [--explain] [--method NAME] [--composite FILE.json] [--zero-bias] [--dtype float32|float64]
//       [--device cpu|cuda] [--json OUT|-] [--html OUT] [--logits OUT.safetensors]
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "csrc/app/cli/cli.h"
#include "csrc/app/explain/explain.h"
#include "csrc/app/generate/generate.h"
#include "csrc/app/generate/generation_html.h"
#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"
#include "csrc/io/safetensors.h"
#include "models/mamba.h"

namespace mamba_lrp {
namespace cli {
namespace {

struct GenerateArgs {
  Args common;  // --model, the input, --method, --dtype, --json, --html, ... (parse_args)
  std::string max_new_tokens, logits;
  bool explain = false;
};

// Takes generate's own options out of argv and parses the rest as every command's.
GenerateArgs parse_generate_args(int argc, char** argv) {
  GenerateArgs g;
  std::vector<char*> rest = {argv[0], argv[1]};
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--explain") {
      g.explain = true;
    } else if (flag == "--max-new-tokens" || flag == "--logits") {
      if (i + 1 >= argc) throw io::InputError("option " + flag + " needs a value");
      (flag == "--logits" ? g.logits : g.max_new_tokens) = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  g.common = parse_args(static_cast<int>(rest.size()), rest.data());
  const Args& a = g.common;
  if (a.model.empty()) throw io::InputError("generate needs --model DIR");
  if (g.max_new_tokens.empty()) throw io::InputError("generate needs --max-new-tokens N");
  if (!a.image.empty() || !a.png.empty() || !a.output.empty() || a.no_resize)
    throw io::InputError("generate: --image, --png, --output and --no-resize are not options of generate");
  if (a.target != "argmax" || !a.position.empty())
    throw io::InputError("generate: --target and --position are not options of generate (each generated token is "
                         "explained where it was predicted)");
  if (!a.input.empty() + !a.ids.empty() + a.has_text != 1)
    throw io::InputError("generate needs exactly one of --input, --ids, --text");
  if (a.dtype != "float32" && a.dtype != "float64")
    throw io::InputError("--dtype must be float32 or float64, got '" + a.dtype + "'");
  if (!is_lm_method(a.method)) throw io::InputError("unknown method '" + a.method + "' (mamba-lrp generate --help)");
  return g;
}

// The config's eos_token_id (an integer), or -1.
int64_t read_eos_id(const std::filesystem::path& dir) {
  const nlohmann::json j = io::read_json_file((dir / "config.json").string(), "a model directory needs config.json");
  return j.contains("eos_token_id") && j["eos_token_id"].is_number_integer() ? j["eos_token_id"].get<int64_t>() : -1;
}

}  // namespace

int run_generate(int argc, char** argv) {
  const GenerateArgs g = parse_generate_args(argc, argv);
  const Args& a = g.common;
  const std::filesystem::path dir(a.model);
  if (!std::filesystem::is_directory(dir)) throw io::InputError(a.model + ": not a model directory");
  const std::string kind = read_model_type(dir);
  if (kind != "mamba" && kind != "mamba2") throw io::InputError(a.model + ": generate needs a Mamba language model");
  GenerateOptions options;
  options.max_new_tokens = parse_int(g.max_new_tokens, "--max-new-tokens");
  if (options.max_new_tokens < 0) throw io::InputError("--max-new-tokens must be >= 0, got " + g.max_new_tokens);
  options.eos_id = read_eos_id(dir);
  ExplainOptions explain_options;
  explain_options.method = a.method;
  explain_options.zero_bias = a.zero_bias;
  explain_options.recompute = a.recompute;
  if (!a.composite.empty()) explain_options.composite = rules::Composite::from_file(a.composite);
  set_method_options(a, explain_options);

  LmInputs in = load_lm_inputs(a, dir);
  if (in.ids.size(0) != 1)
    throw io::InputError("generate continues one prompt: the input has " + std::to_string(in.ids.size(0)) + " rows");
  const at::ScalarType dtype = a.dtype == "float64" ? at::kDouble : at::kFloat;
  const at::Device device = parse_device(a.device, a.dtype);
  MambaForCausalLM model = load_mamba_lm(a.model, dtype);
  model->to(device);
  const at::Tensor ids = in.ids[0].contiguous();
  const std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  const Generation gen = generate_greedy(model, prompt, in.mask.defined() ? in.mask[0] : at::Tensor(), options);
  std::vector<TokenExplanation> explanations;
  if (g.explain) explanations = explain_generation(model, gen, explain_options);

  auto token_text = [&](int64_t id) -> std::string {
    return in.tokenizer && id < in.tokenizer->vocab_size() ? in.tokenizer->decode(id) : "[" + std::to_string(id) + "]";
  };
  nlohmann::json out = {{"model_type", kind}, {"prompt_ids", gen.prompt_ids}, {"generated_ids", gen.generated_ids}};
  if (in.tokenizer) out["generated_text"] = in.tokenizer->decode(gen.generated_ids);
  if (g.explain) {
    out["method"] = a.method;
    out["explanations"] = nlohmann::json::array();
    for (const TokenExplanation& e : explanations)
      out["explanations"].push_back({{"target", e.target},
                                     {"position", e.position},
                                     {"logit", e.logit},
                                     {"relevance", e.relevance},
                                     {"relevance_sum", e.relevance_sum},
                                     {"distance_median", e.distance_median},
                                     {"distance_p90", e.distance_p90}});
  }
  if (!a.json.empty()) write_output(a.json, out.dump(2) + "\n");
  if (!g.logits.empty()) io::save_safetensors(g.logits, {{"logits", gen.step_logits.contiguous()}});
  if (!a.html.empty()) {
    std::vector<std::string> tokens;
    for (int64_t id : gen.prompt_ids) tokens.push_back(token_text(id));
    for (int64_t id : gen.generated_ids) tokens.push_back(token_text(id));
    write_output(a.html, generation_html("mamba-lrp generate: " + a.model, a.method, gen, explanations, tokens));
  }
  if (a.json != "-") {
    std::string text;
    for (int64_t id : gen.generated_ids) text += token_text(id);
    std::printf("prompt: %zu tokens; generated %zu: %s\n", gen.prompt_ids.size(), gen.generated_ids.size(),
                nlohmann::json(text).dump().c_str());
    for (size_t k = 0; k < explanations.size(); ++k) {
      const TokenExplanation& e = explanations[k];
      std::vector<size_t> order(e.relevance.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return e.relevance[x] > e.relevance[y]; });
      std::printf("  %s: logit %.4g, sum R %.4g, distance d50 %lld d90 %lld; top:",
                  nlohmann::json(token_text(e.target)).dump().c_str(), e.logit, e.relevance_sum,
                  static_cast<long long>(e.distance_median), static_cast<long long>(e.distance_p90));
      const std::vector<int64_t> context = [&] {
        std::vector<int64_t> c = gen.prompt_ids;
        c.insert(c.end(), gen.generated_ids.begin(), gen.generated_ids.end());
        return c;
      }();
      for (size_t j = 0; j < std::min<size_t>(3, order.size()); ++j)
        std::printf(" %s@%zu (%.3g)", nlohmann::json(token_text(context[order[j]])).dump().c_str(), order[j],
                    e.relevance[order[j]]);
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace cli
}  // namespace mamba_lrp
