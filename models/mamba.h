// Mamba language models as torch::nn modules (Hugging Face's MambaForCausalLM, tensor
// names as HF), running the selective_scan op and the LRP rule ops. One propagation
// switch per model decides which rules the backward applies; forward values are the same
// in every mode.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "models/mamba2.h"
#include "models/mamba_config.h"
#include "models/weights.h"
#include "models/ssm_branch.h"
#include "models/propagation_context.h"

namespace mamba_lrp {

// RMSNorm (weight only), with the norm rule when asked.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x, bool norm_rule);  // (..., dim)
  at::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class MambaMixerImpl : public torch::nn::Module {
 public:
  explicit MambaMixerImpl(const MambaConfig& config);
  // hidden (B, L, H); mask (B, L) of 0/1 or undefined -> (B, L, H). With `state` (generation's
  // prefill): the plain forward, also returning the recurrent state after the last position.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx,
                     SsmState* state = nullptr);
  // One token: hidden (B, H) -> (B, H), advancing `state`.
  at::Tensor step(const at::Tensor& hidden, SsmState& state);

  Weights in_proj{nullptr}, x_proj{nullptr}, dt_proj{nullptr}, out_proj{nullptr};  // Linear maps
  Weights conv1d{nullptr};  // (I, 1, K) depthwise
  at::Tensor A_log, D;  // (I, N), (I)

 private:
  SsmBranch branch() const;  // the weights of the branch
  MambaConfig config_;
};
TORCH_MODULE(MambaMixer);

class MambaBlockImpl : public torch::nn::Module {
 public:
  explicit MambaBlockImpl(const MambaConfig& config);
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx,
                     SsmState* state = nullptr);  // (B, L, H)
  at::Tensor step(const at::Tensor& hidden, SsmState& state);  // (B, H)

  RMSNorm norm{nullptr};
  MambaMixer mixer{nullptr};    // Mamba-1; null for Mamba-2
  Mamba2Mixer mixer2{nullptr};  // Mamba-2 (registered as "mixer" too); null for Mamba-1

 private:
  bool residual_in_fp32_;
};
TORCH_MODULE(MambaBlock);

class MambaModelImpl : public torch::nn::Module {
 public:
  explicit MambaModelImpl(const MambaConfig& config);
  // From the embedding output: embeds (B, L, H) -> final hidden states (B, L, H).
  // With `states` (generation's prefill): one SsmState per layer after the last position.
  at::Tensor forward_embeds(const at::Tensor& embeds, const at::Tensor& mask, const PropagationContext& ctx,
                            std::vector<SsmState>* states = nullptr);

  Weights embeddings{nullptr};  // (V, H)
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm_f{nullptr};
};
TORCH_MODULE(MambaModel);

// The language model (head rows = vocab) or a classifier (head rows = classes, the class
// logit read at the last position). Tied head: lm_head uses the embedding matrix.
class MambaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit MambaForCausalLMImpl(const MambaConfig& config);
  at::Tensor embed(const at::Tensor& input_ids);  // (B, L) int64 -> (B, L, H)
  at::Tensor forward_embeds(const at::Tensor& embeds, const at::Tensor& mask = {});  // -> logits (B, L, V)
  // The final hidden states (B, L, H) and the head applied to any of them (..., H) -> (..., V):
  // an explanation needs the head at one position only.
  at::Tensor hidden_states(const at::Tensor& embeds, const at::Tensor& mask = {});
  at::Tensor head(const at::Tensor& hidden);
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& mask = {});

  // Generation with the recurrent state (nothing recorded for a backward): prefill runs one
  // forward over input_ids (B, L) (mask (B, L) of 0/1 or undefined) and returns the logits
  // at the last position (B, V), leaving in `state` one SsmState per layer; step feeds one
  // token per row, ids (B), and returns its logits (B, V), advancing `state` by one token:
  // O(1) in the length so far. The logits equal forward()'s at the same positions.
  at::Tensor prefill(const at::Tensor& input_ids, const at::Tensor& mask, std::vector<SsmState>& state);
  at::Tensor step(const at::Tensor& ids, std::vector<SsmState>& state);

  void set_propagation(rules::Propagation p) { ctx_.rules = rules::rules_of(p); propagation_ = p; }
  rules::Propagation propagation() const { return propagation_; }
  void set_composite(rules::Composite c) { ctx_.composite = std::move(c); }
  void set_recompute(bool on) { ctx_.recompute = on; }  // see PropagationContext::recompute
  bool recompute() const { return ctx_.recompute; }
  void set_trace(std::vector<SsmTrace>* trace) { ctx_.trace = trace; }  // see PropagationContext::trace
  const rules::Composite& composite() const { return ctx_.composite; }
  const MambaConfig& config() const { return config_; }
  at::Tensor head_weight();  // (num_outputs, H)
  // Every bias tensor of the model (conv1d, dt_proj, and in/out_proj when present).
  std::vector<at::Tensor> biases();

  MambaModel backbone{nullptr};
  Weights lm_head{nullptr};  // (num_outputs, H); null when tied

 private:
  MambaConfig config_;
  rules::Propagation propagation_ = rules::Propagation::kStandard;
  PropagationContext ctx_;
};
TORCH_MODULE(MambaForCausalLM);

// Loads a model directory (config.json + weights, DESIGN.md §4) in float32 or float64.
// The parameters do not require gradients (explanations need none); every problem is an
// io::InputError naming the file and the tensor.
MambaForCausalLM load_mamba_lm(const std::string& model_dir, at::ScalarType dtype);

}  // namespace mamba_lrp
