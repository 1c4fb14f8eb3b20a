// torch.ops.mamba_lrp.explain: the C++ explainers (explain.h, explain_vim.h) as an op, so
// Python (python/mamba_lrp) and TorchScript reach them without a copy of their logic.
//
//   explain(str model_dir, Tensor inputs, str method="mambalrp", int[] target=[],
//           int position=-1, Tensor? attention_mask=None, bool zero_bias=False,
//           str dtype="float32") -> (Tensor relevance, Tensor logits, Tensor targets)
//
// inputs: token ids (B, L) or (L) for a Mamba LM / classifier, pixel values (B, C, H, W) or
// (C, H, W) for a Vision Mamba (by config.json's model_type). target: [] = the argmax per
// row, one id for every row, or one per row. relevance: (B, L) per token for a Mamba model,
// (B, T) per token of the sequence the first block sees (cls included) for Vim. Bad input is
// a ValueError naming what is wrong. Each model directory is loaded once per process and
// dtype, and kept.
#include <torch/library.h>
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "csrc/app/explain/explain.h"
#include "csrc/app/explain/explain_vim.h"
#include "csrc/app/model_type.h"
#include "csrc/io/errors.h"
#include "models/mamba.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {
namespace {

using ExplainResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

at::ScalarType parse_dtype(const std::string& dtype) {
  if (dtype == "float32") return at::kFloat;
  if (dtype == "float64") return at::kDouble;
  throw io::InputError("explain: dtype must be \"float32\" or \"float64\", got \"" + dtype + "\"");
}

// One explanation at a time: the models below are shared, and an explanation switches its
// model's propagation mode (and biases, with zero_bias) while it runs.
std::mutex explain_mutex;

// The loaded models, one per (directory, dtype). Called under explain_mutex.
template <typename Model>
Model& cached_model(const std::string& dir, at::ScalarType dtype, Model (*load)(const std::string&, at::ScalarType)) {
  static std::map<std::pair<std::string, int>, Model> models;
  const auto key = std::make_pair(dir, static_cast<int>(dtype));
  auto it = models.find(key);
  if (it == models.end()) it = models.emplace(key, load(dir, dtype)).first;
  return it->second;
}

ExplainResult explain_lm(const std::string& dir, const at::Tensor& inputs, const std::string& method,
                         std::vector<int64_t> targets, int64_t position, const c10::optional<at::Tensor>& mask,
                         bool zero_bias, at::ScalarType dtype) {
  if (!is_lm_method(method)) throw io::InputError("explain: unknown method \"" + method + "\" for a Mamba model");
  if (inputs.is_floating_point() || inputs.is_complex() || inputs.scalar_type() == at::kBool)
    throw io::InputError("explain: a Mamba model reads token ids (an integer tensor), got " +
                         std::string(c10::toString(inputs.scalar_type())));
  at::Tensor ids = inputs.to(at::kCPU, at::kLong);
  if (ids.dim() == 1) ids = ids.unsqueeze(0);
  if (ids.dim() != 2) throw io::InputError("explain: input_ids must have shape (B, L) or (L)");
  at::Tensor attention_mask;
  if (mask) {
    attention_mask = mask->to(at::kCPU, at::kLong);
    if (attention_mask.dim() == 1) attention_mask = attention_mask.unsqueeze(0);
    if (attention_mask.sizes() != ids.sizes())
      throw io::InputError("explain: attention_mask must have the shape of input_ids");
  }
  ExplainOptions opt;
  opt.method = method;
  opt.targets = std::move(targets);
  opt.position = position;
  opt.zero_bias = zero_bias;
  MambaForCausalLM& model = cached_model<MambaForCausalLM>(dir, dtype, &load_mamba_lm);
  const Explanation e = explain(model, ids, attention_mask, opt);
  return {e.relevance, e.logits, e.targets};
}

ExplainResult explain_vim_model(const std::string& dir, const at::Tensor& inputs, const std::string& method,
                                std::vector<int64_t> targets, int64_t position,
                                const c10::optional<at::Tensor>& mask, bool zero_bias, at::ScalarType dtype) {
  if (!is_vim_method(method)) throw io::InputError("explain: unknown method \"" + method + "\" for a Vision Mamba");
  if (mask) throw io::InputError("explain: attention_mask is for Mamba language models, not Vision Mamba");
  if (position != -1) throw io::InputError("explain: position is for Mamba language models, not Vision Mamba");
  VisionMamba& model = cached_model<VisionMamba>(dir, dtype, &load_vision_mamba);
  const at::Tensor pixels = check_pixel_values(model->config(), inputs.to(at::kCPU), dtype, "explain: pixel_values");
  VimExplainOptions opt;
  opt.method = method;
  opt.targets = std::move(targets);
  opt.zero_bias = zero_bias;
  opt.pixels = false;
  const VimExplanation e = explain_vim(model, pixels, opt);
  return {e.token_relevance, e.logits, e.targets};
}

ExplainResult explain_op(c10::string_view model_dir, const at::Tensor& inputs, c10::string_view method,
                         at::IntArrayRef target, int64_t position, const c10::optional<at::Tensor>& attention_mask,
                         bool zero_bias, c10::string_view dtype) {
  const std::string dir(model_dir);
  std::lock_guard<std::mutex> lock(explain_mutex);
  try {
    const at::ScalarType scalar_type = parse_dtype(std::string(dtype));
    const std::vector<int64_t> targets(target.begin(), target.end());
    if (read_model_type(dir) == "vim")
      return explain_vim_model(dir, inputs, std::string(method), targets, position, attention_mask, zero_bias,
                               scalar_type);
    return explain_lm(dir, inputs, std::string(method), targets, position, attention_mask, zero_bias, scalar_type);
  } catch (const io::InputError& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mamba_lrp, m) {
  m.def(
      "explain(str model_dir, Tensor inputs, str method=\"mambalrp\", int[] target=[], int position=-1, "
      "Tensor? attention_mask=None, bool zero_bias=False, str dtype=\"float32\") "
      "-> (Tensor relevance, Tensor logits, Tensor targets)",
      TORCH_FN(explain_op));
}

}  // namespace mamba_lrp
