// Vision Mamba (hustvl/Vim's VisionMamba, bimamba_type "v2") as torch::nn modules, tensor
// names as hustvl/Vim, running the selective_scan op and the LRP rule ops of the Mamba
// language model (models/mamba.h): the bidirectional mixer is two ssm_branch_forward calls
// sharing in_proj and out_proj. One propagation switch per model decides which rules the
// backward applies; forward values are the same in every mode.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "models/mamba.h"
#include "models/propagation_context.h"
#include "models/vim_config.h"

namespace mamba_lrp {

// RMSNorm (weight) or LayerNorm (weight and bias), with the norm rule when asked.
class VimNormImpl : public torch::nn::Module {
 public:
  VimNormImpl(int64_t dim, double eps, bool rms);
  at::Tensor forward(const at::Tensor& x, bool norm_rule);  // (..., dim)
  at::Tensor weight, bias;  // bias undefined for RMSNorm

 private:
  double eps_;
  bool rms_;
};
TORCH_MODULE(VimNorm);

// The bidirectional mixer (bimamba v2): shared in_proj; the forward branch on the sequence
// and the backward branch (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b) on x and z flipped
// along the sequence; out_proj((y + flip(y_b)) / 2) (no /2 without if_divide_out).
class VimMixerImpl : public torch::nn::Module {
 public:
  explicit VimMixerImpl(const VimConfig& config);
  at::Tensor forward(const at::Tensor& hidden, const PropagationContext& ctx);  // (B, L, D) -> (B, L, D)

  torch::nn::Linear in_proj{nullptr}, x_proj{nullptr}, dt_proj{nullptr}, out_proj{nullptr};
  torch::nn::Linear x_proj_b{nullptr}, dt_proj_b{nullptr};
  torch::nn::Conv1d conv1d{nullptr}, conv1d_b{nullptr};
  at::Tensor A_log, D, A_b_log, D_b;  // (I, N), (I); the _b ones undefined without v2

 private:
  VimConfig config_;
};
TORCH_MODULE(VimMixer);

// hustvl/Vim's Block without fused add-norm: residual = residual + hidden (the first block:
// its input), hidden = mixer(norm(residual)).
class VimBlockImpl : public torch::nn::Module {
 public:
  explicit VimBlockImpl(const VimConfig& config);
  // hidden, residual (B, L, D) (residual undefined for the first block) -> (hidden, residual)
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden, const at::Tensor& residual,
                                            const PropagationContext& ctx);

  VimNorm norm{nullptr};
  VimMixer mixer{nullptr};

 private:
  bool residual_in_fp32_;
};
TORCH_MODULE(VimBlock);

// The patch embedding: Conv2d(in_chans, embed_dim, patch_size, stride), flattened to tokens.
class VimPatchEmbedImpl : public torch::nn::Module {
 public:
  explicit VimPatchEmbedImpl(const VimConfig& config);
  at::Tensor forward(const at::Tensor& pixels, const PropagationContext& ctx);  // (B, C, H, W) -> (B, P, D)
  torch::nn::Conv2d proj{nullptr};

 private:
  int64_t stride_;
};
TORCH_MODULE(VimPatchEmbed);

class VisionMambaImpl : public torch::nn::Module {
 public:
  explicit VisionMambaImpl(const VimConfig& config);
  // The sequence the first block sees: patch embeddings, the cls token inserted at
  // cls_position, pos_embed added. (B, C, H, W) -> (B, T, D)
  at::Tensor tokens(const at::Tensor& pixel_values);
  // From that sequence to the logits (B, classes) (the pooled features when num_classes is 0).
  at::Tensor forward_tokens(const at::Tensor& tokens);
  at::Tensor forward(const at::Tensor& pixel_values);  // -> (B, classes)

  void set_propagation(rules::Propagation p) {
    ctx_.rules = rules::rules_of(p);
    propagation_ = p;
  }
  rules::Propagation propagation() const { return propagation_; }
  void set_composite(rules::Composite c) { ctx_.composite = std::move(c); }
  void set_recompute(bool on) { ctx_.recompute = on; }  // see PropagationContext::recompute
  bool recompute() const { return ctx_.recompute; }
  void set_trace(std::vector<SsmTrace>* trace) { ctx_.trace = trace; }  // see PropagationContext::trace
  const rules::Composite& composite() const { return ctx_.composite; }
  const VimConfig& config() const { return config_; }
  // Every bias tensor of the model (patch embedding, conv1d, dt_proj, head, LayerNorm).
  // cls_token and pos_embed are not biases: they are learned inputs.
  std::vector<at::Tensor> biases();

  VimPatchEmbed patch_embed{nullptr};
  at::Tensor cls_token;  // (1, 1, D), undefined without a cls token
  at::Tensor pos_embed;  // (1, T, D), undefined without if_abs_pos_embed
  torch::nn::ModuleList layers{nullptr};
  VimNorm norm_f{nullptr};
  torch::nn::Linear head{nullptr};  // null when num_classes is 0

 private:
  VimConfig config_;
  rules::Propagation propagation_ = rules::Propagation::kStandard;
  PropagationContext ctx_;
};
TORCH_MODULE(VisionMamba);

// Loads a Vim model in float32 or float64 from a directory (config.json + model.safetensors,
// or one Vim .pth/.pt checkpoint with the state dict under "model"), or from a checkpoint
// file with config.json beside it. Parameters do not require gradients; every problem
// (missing, unexpected or misshapen tensor: a checkpoint of another model) is an io::InputError
// naming the file and the tensor.
VisionMamba load_vision_mamba(const std::string& dir_or_file, at::ScalarType dtype);

}  // namespace mamba_lrp
