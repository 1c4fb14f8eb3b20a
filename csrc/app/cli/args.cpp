// Argument parsing and helpers shared by the commands of mamba-lrp.
#include "csrc/app/cli/cli.h"

#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "csrc/app/model_type.h"
#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"
#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace cli {

namespace {

// Each command's synopsis: lines starting "mamba-lrp", continuation lines indented by 4.
const char* const kExplainSynopsis =
    "mamba-lrp explain --model DIR (--input FILE | --ids 1,2,3 | --text \"...\")\n"
    "    [--method NAME] [--target N|argmax] [--position P] [--composite FILE.json]\n"
    "    [--dtype float32|float64] [--zero-bias] [--recompute auto|on|off] [--device cpu|cuda] [--json OUT|-]\n"
    "    [--html OUT] [--jsonl OUT [--resume]] [--timeout S]\n"
    "mamba-lrp explain --model VIM_DIR (--input PIXELS.safetensors | --image F.png|F.jpg) [--no-resize]\n"
    "    [--method NAME] [--target N|argmax] [--composite FILE.json] [--dtype float32|float64]\n"
    "    [--zero-bias] [--recompute auto|on|off] [--device cpu|cuda] [--json OUT|-] [--png OUT.png]\n"
    "    [--output OUT.safetensors] [--jsonl OUT [--resume]] [--timeout S]\n";
const char* const kForwardSynopsis =
    "mamba-lrp forward --model DIR (--input FILE | --ids ... | --text ...) [--dtype ...] [--device cpu|cuda]\n"
    "    --output OUT.safetensors\n";
const char* const kEvaluateSynopsis =
    "mamba-lrp evaluate --model DIR --data FILE.safetensors --methods a,b,c [--steps 11]\n"
    "    [--baseline unk|pad|ID|zero|mean] [--json OUT] [--markdown OUT] [--plot OUT.svg]\n"
    "    [--dtype float32|float64] [--device cpu|cuda] [--timeout S] [method options]\n";
const char* const kTrainSynopsis =
    "mamba-lrp train (--init CONFIG.json | --model DIR) --data TRAIN.safetensors [--test TEST.safetensors]\n"
    "    --out DIR [--epochs 3] [--lr 1e-3] [--batch-size 32] [--seed 0] [--tokenizer FILE]\n"
    "    [--dtype float32|float64] [--device cpu|cuda] [--dump-grads FILE.safetensors] [--quiet]\n";
const char* const kGenerateSynopsis =
    "mamba-lrp generate --model DIR (--ids 1,2,3 | --text \"...\" | --input FILE) --max-new-tokens N\n"
    "    [--explain] [--method NAME] [--composite FILE.json] [--zero-bias] [--dtype float32|float64] [--device cpu|cuda]\n"
    "    [--json OUT|-] [--html OUT] [--logits OUT.safetensors]\n";
const char* const kHelpSynopsis = "mamba-lrp COMMAND --help    (the usage of one command)\n";

const char* const kMethods =
    "methods: mambalrp (default), gi, lrp-ln, mambalrp-no-silu, mambalrp-no-ssm, mambalrp-no-gate,\n"
    "         smoothgrad, ig, attnroll, mambaattr, random\n"
    "method options: --samples N (smoothgrad, 5) --noise F (smoothgrad, 0.15 of the input range)\n"
    "         --ig-steps N (50) --ig-method gausslegendre|riemann_trapezoid|riemann_left|riemann_right|riemann_middle\n"
    "         --ig-baseline zero|ID (token embedding) --seed N (0) --batch-size N (32)\n";
const char* const kDistributed =
    "many rows: --jsonl OUT (explain: one explanation per line as rows finish; --resume skips the\n"
    "         rows an interrupted run wrote). Started by torchrun (python3 -m torch.distributed.run\n"
    "         --nproc_per_node N --no_python mamba-lrp explain|evaluate ...) the rows are split over the\n"
    "         processes and rank 0 writes the outputs; --timeout S (1800) bounds every wait for another rank.\n";
const char* const kMemory =
    "memory:  --recompute auto|on|off (explain, MambaLRP: keep only the SSM branch inputs for the backward\n"
    "         and recompute the rest; auto = on above 2 GiB of kept activations per row, Mamba-2 above 1 GiB)\n";

// The synopses as one "usage:" block: "usage: " before the first line, its width of spaces
// before the others.
std::string usage_block(const std::vector<const char*>& synopses) {
  std::string out;
  for (const char* synopsis : synopses) {
    std::istringstream lines(synopsis);
    for (std::string line; std::getline(lines, line);) out += (out.empty() ? "usage: " : "       ") + line + "\n";
  }
  return out;
}

}  // namespace

std::string usage(const std::string& command) {
  if (command.empty())
    return usage_block({kExplainSynopsis, kForwardSynopsis, kEvaluateSynopsis, kTrainSynopsis, kGenerateSynopsis,
                        kHelpSynopsis}) +
           kMethods + kMemory + kDistributed;
  if (command == "explain") return usage_block({kExplainSynopsis}) + kMethods + kMemory + kDistributed;
  if (command == "forward")
    return usage_block({kForwardSynopsis}) + "  Writes the logits (B, L, V) of the model's forward as tensor \"logits\".\n";
  if (command == "evaluate")
    return usage_block({kEvaluateSynopsis}) +
           "  Token flipping (Mamba) or patch flipping (Vision Mamba); the Markdown table on stdout.\n" + kMethods +
           kDistributed;
  if (command == "train")
    return usage_block({kTrainSynopsis}) +
           "  A Mamba classifier (config with num_labels; data: input_ids, attention_mask, labels) or a\n"
           "  Vision Mamba (config with model_type \"vim\" and num_classes; data: pixel_values, labels).\n";
  if (command == "generate")
    return usage_block({kGenerateSynopsis}) +
           "  Greedy decoding (ties to the lowest id) with the recurrent state, up to N new tokens or the config's\n"
           "  eos_token_id. --explain: every generated token explained where it was predicted, over the context\n"
           "  before it (JSON \"explanations\", with the relevance-weighted distances distance_median/_p90;\n"
           "  --html: the matrix heatmap). --logits: the logits each new token was picked from, (G, V).\n" +
           kMethods;
  return "";
}

bool wants_help(int argc, char** argv) {
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") return true;
  return false;
}

Args parse_args(int argc, char** argv) {
  if (argc < 2) throw io::InputError("no command given");
  Args a;
  a.command = argv[1];
  const std::map<std::string, std::string*> values = {
      {"--model", &a.model},   {"--input", &a.input},         {"--ids", &a.ids},     {"--text", &a.text},
      {"--method", &a.method}, {"--target", &a.target},       {"--position", &a.position},
      {"--composite", &a.composite}, {"--dtype", &a.dtype},   {"--json", &a.json},   {"--html", &a.html},
      {"--png", &a.png},       {"--image", &a.image},         {"--output", &a.output},
      {"--samples", &a.samples}, {"--noise", &a.noise},       {"--ig-steps", &a.ig_steps},
      {"--ig-method", &a.ig_method}, {"--ig-baseline", &a.ig_baseline}, {"--seed", &a.seed},
      {"--batch-size", &a.batch_size}, {"--recompute", &a.recompute}, {"--device", &a.device},
      {"--jsonl", &a.jsonl},   {"--timeout", &a.timeout}};
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--zero-bias") {
      a.zero_bias = true;
      continue;
    }
    if (flag == "--no-resize") {
      a.no_resize = true;
      continue;
    }
    if (flag == "--resume") {
      a.resume = true;
      continue;
    }
    auto it = values.find(flag);
    if (it == values.end()) throw io::InputError("unknown option '" + flag + "'");
    if (i + 1 >= argc) throw io::InputError("option " + flag + " needs a value");
    *it->second = argv[++i];
    if (flag == "--text") a.has_text = true;
  }
  return a;
}

int64_t parse_int(const std::string& s, const std::string& what) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) throw io::InputError(what + " must be an integer, got '" + s + "'");
  return v;
}

c10::Device parse_device(const std::string& s, const std::string& dtype) {
  const bool cuda = s == "cuda" || s.rfind("cuda:", 0) == 0;
  if (s != "cpu" && !cuda) throw io::InputError("--device must be cpu or cuda (or cuda:N), got '" + s + "'");
  if (!cuda) return c10::Device(c10::kCPU);
  const int64_t index = s == "cuda" ? 0 : parse_int(s.substr(5), "--device cuda:N");
  if (!torch::cuda::is_available())
    throw io::InputError("--device " + s + ": CUDA is not available (no CUDA device here, or a libtorch without CUDA)");
  if (index < 0 || index >= static_cast<int64_t>(torch::cuda::device_count()))
    throw io::InputError("--device " + s + ": no such CUDA device (" + std::to_string(torch::cuda::device_count()) +
                         " found)");
  if (!ops::has_cuda_kernels())
    throw io::InputError("--device " + s + ": CUDA is not available to mamba_lrp (the library was built without "
                         "its CUDA kernels: configure with a CUDA Torch)");
  if (dtype == "float64")
    throw io::InputError("--device " + s + " takes --dtype float32 (the CUDA selective scan has no float64 kernel)");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

double parse_double(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || !std::isfinite(v)) throw io::InputError(what + " must be a number, got '" + s + "'");
  return v;
}

std::vector<int64_t> parse_id_list(const std::string& s) {
  std::vector<int64_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) throw io::InputError("--ids: empty entry in '" + s + "'");
    ids.push_back(parse_int(item, "--ids entry"));
  }
  if (ids.empty()) throw io::InputError("--ids: no token ids given");
  return ids;
}

std::string read_model_type(const std::filesystem::path& model) { return mamba_lrp::read_model_type(model); }

std::string class_name(const std::filesystem::path& model, int64_t id) {
  const std::filesystem::path dir = std::filesystem::is_regular_file(model) ? model.parent_path() : model;
  const nlohmann::json j = io::read_json_file((dir / "config.json").string(), "a model directory needs config.json");
  const std::string key = std::to_string(id);
  if (j.is_object() && j.contains("id2label") && j["id2label"].is_object() && j["id2label"].contains(key) &&
      j["id2label"][key].is_string())
    return j["id2label"][key].get<std::string>() + " (" + key + ")";
  return "class " + key;
}

void write_output(const std::string& dest, const std::string& content) {
  if (dest == "-") {
    std::cout << content;
    return;
  }
  const std::string tmp = dest + ".tmp-" + std::to_string(::getpid());
  std::ofstream f(tmp, std::ios::binary);
  if (!f) throw io::InputError(dest + ": cannot write");
  f << content;
  f.close();  // a failed flush on close is a failed write too
  std::error_code ec;
  if (f) std::filesystem::rename(tmp, dest, ec);
  if (!f || ec) {
    std::filesystem::remove(tmp, ec);
    throw io::InputError(dest + ": write failed");
  }
}

}  // namespace cli
}  // namespace mamba_lrp
