// Shared pieces of the mamba-lrp command line (DESIGN.md §5): the parsed arguments and
// small helpers; one file per model kind implements its commands.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>

#include <nlohmann/json.hpp>

#include "csrc/app/distributed/process_group.h"
#include "csrc/io/tokenizer.h"

namespace mamba_lrp {
struct ExplainOptions;
namespace cli {

struct Args {
  std::string command, model, input, ids, text, method = "mambalrp", target = "argmax", composite,
      dtype = "float32", json, html, png, image, output, recompute = "auto", device = "cpu";
  bool has_text = false, zero_bias = false, no_resize = false;
  // many rows: --jsonl OUT (one explanation per line, streamed), --resume (skip the rows an
  // interrupted --jsonl run wrote), --timeout S (seconds a rank waits for the others under torchrun)
  std::string jsonl, timeout = "1800";
  bool resume = false;
  std::string position;
  // baseline explainers (explain and evaluate): smoothgrad, ig, random, batching
  std::string samples, noise, ig_steps, ig_method, ig_baseline, seed, batch_size;
};

// Parses "--flag value" pairs after the command; io::InputError on anything unknown.
Args parse_args(int argc, char** argv);
int64_t parse_int(const std::string& s, const std::string& what);
// --device: "cpu" (the default) or "cuda" / "cuda:N", where the model runs. io::InputError
// (exit 2) for another name, for CUDA where this machine, this libtorch or this build of
// the library has none, and for CUDA with --dtype float64 (the CUDA scan has no float64).
c10::Device parse_device(const std::string& device, const std::string& dtype);
// A finite number; io::InputError naming `what` otherwise.
double parse_double(const std::string& s, const std::string& what);
std::vector<int64_t> parse_id_list(const std::string& s);
// "mamba" or "vim" (the model directory's config.json model_type; "mamba" when absent).
std::string read_model_type(const std::filesystem::path& dir);
// The config's id2label ({"0": "ham", ...}) as "label (id)" for id, or "class id" without one.
std::string class_name(const std::filesystem::path& model_dir, int64_t id);
// Writes to a file, or to stdout for "-". A file is written under a temporary name beside it
// (DEST.tmp-PID) and renamed to DEST once complete, so a failed run leaves no truncated DEST.
void write_output(const std::string& dest, const std::string& content);

// ---- many rows: torchrun and --jsonl (rows.cpp) ------------------------------------------
// The process group of a run started by torchrun (RANK, WORLD_SIZE, ... set; --timeout bounds
// every wait), or a group of one process when the variables are unset.
std::unique_ptr<distributed::ProcessGroup> join_process_group(const Args& a);
// Whether explain runs row by row (started by torchrun, or --jsonl given); --resume without --jsonl
// is an io::InputError.
bool runs_row_by_row(const Args& a);
// --device for this process: "cuda" becomes cuda:LOCAL_RANK under torchrun (one GPU per process).
std::string device_of_rank(const std::string& device);
// Explains rows [0, rows) in rounds: with K = --batch-size (32), rank r of W takes the K rows
// from round start + r K, explain(first, count) gives their explanation objects. After each
// round of W K rows rank 0 receives them in row order and appends them to --jsonl
// (OUT.partial, renamed to OUT at the end; lines {"row": i, "method": ..., <explanation>}).
// Rows that fail on any rank fail every rank (io::InputError or std::runtime_error naming the
// rank, the rows and the reason). Returns, on rank 0 and only when `keep` is set, every row's
// explanation in row order.
using ExplainRowsFn = std::function<std::vector<nlohmann::json>(int64_t first, int64_t count)>;
std::vector<nlohmann::json> explain_rows(const Args& a, distributed::ProcessGroup& group, int64_t rows, bool keep,
                                         const ExplainRowsFn& explain);

// The token ids of a Mamba language model's input, from --input (safetensors with
// input_ids and an optional attention_mask), --ids or --text (explain_lm.cpp).
struct LmInputs {
  at::Tensor ids, mask;  // (B, L) int64; mask undefined when none
  std::unique_ptr<mamba_lrp::io::BpeTokenizer> tokenizer;  // the model's, when it has one
};
LmInputs load_lm_inputs(const Args& a, const std::filesystem::path& model_dir);

// explain / forward for Mamba language models (explain_lm.cpp)
int run_explain_lm(const Args& a);
int run_forward_lm(const Args& a);
// explain for Vision Mamba models (explain_vim.cpp)
int run_explain_vim(const Args& a);
// evaluate: faithfulness by token / patch flipping (evaluate.cpp)
int run_evaluate(int argc, char** argv);
// train: a Mamba classifier or Vim with Adam and cross-entropy (train.cpp)
int run_train(int argc, char** argv);
// generate: greedy decoding with a Mamba language model, --explain for every new token (generate.cpp)
int run_generate(int argc, char** argv);

// --samples, --noise, --ig-steps, --ig-method, --ig-baseline, --seed, --batch-size into opt
// (explain_lm.cpp); io::InputError on a bad value.
void set_method_options(const Args& a, mamba_lrp::ExplainOptions& opt);

// The usage of every command (command empty), or of one: explain, forward, evaluate or
// train; empty for any other name.
std::string usage(const std::string& command = "");
// Whether the arguments after the command ask for its usage: --help or -h anywhere.
bool wants_help(int argc, char** argv);

}  // namespace cli
}  // namespace mamba_lrp
