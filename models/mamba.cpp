#include "models/mamba.h"

#include <torch/nn/init.h>

#include <filesystem>
#include <set>

#include "csrc/io/errors.h"
#include "csrc/io/checkpoint.h"
#include "csrc/ops/ops.h"
#include "models/channel_layout.h"
#include "models/state_dict.h"

namespace mamba_lrp {

// ---- Weights ----------------------------------------------------------------------------

WeightsImpl::WeightsImpl(std::vector<int64_t> weight_shape, int64_t bias_size) {
  weight = register_parameter("weight", torch::empty(weight_shape));
  if (bias_size > 0) bias = register_parameter("bias", torch::empty({bias_size}));
}

// ---- RMSNorm ----------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x, bool norm_rule) {
  if (norm_rule) return ops::rms_norm_identity(x, weight, eps);
  return x * at::rsqrt(x.square().mean(-1, true) + eps) * weight;
}

// ---- Mixer -------------------------------------------------------------------------------

MambaMixerImpl::MambaMixerImpl(const MambaConfig& c) : config_(c) {
  const int64_t H = c.hidden_size(), I = c.intermediate_size(), N = c.state_size(), R = c.time_step_rank();
  in_proj = register_module("in_proj", Weights(std::vector<int64_t>{2 * I, H}, c.use_bias() ? 2 * I : 0));
  conv1d = register_module("conv1d", Weights(std::vector<int64_t>{I, 1, c.conv_kernel()}, c.use_conv_bias() ? I : 0));
  x_proj = register_module("x_proj", Weights(std::vector<int64_t>{R + 2 * N, I}, 0));
  dt_proj = register_module("dt_proj", Weights(std::vector<int64_t>{I, R}, I));
  out_proj = register_module("out_proj", Weights(std::vector<int64_t>{H, I}, c.use_bias() ? H : 0));
  // S4D-real initialisation, as Mamba: A = -(1..N), D = 1.
  A_log = register_parameter("A_log", torch::log(torch::arange(1, N + 1, torch::kFloat32)).repeat({I, 1}));
  D = register_parameter("D", torch::ones({I}));
}

SsmBranch MambaMixerImpl::branch() const {
  return SsmBranch{conv1d->weight, conv1d->opt_bias(), x_proj->weight, dt_proj->weight, dt_proj->opt_bias(), A_log, D};
}

at::Tensor MambaMixerImpl::forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx,
                                   SsmState* state) {
  const int64_t I = config_.intermediate_size();
  const rules::Composite& comp = ctx.composite;
  // x and z as two products rather than slices of one: the backward then adds two (B, L, H)
  // input gradients instead of filling and adding two (B, L, 2I) ones. Both come out
  // channel-major, the layout of conv1d and the scan.
  const rules::LayerRule in_rule = comp.rule_for("in_proj");
  auto half = [&](int64_t begin) {
    const at::Tensor w_half = in_proj->weight.narrow(0, begin, I);                 // (I, H)
    const c10::optional<at::Tensor> b_half =
        in_proj->bias.defined() ? c10::optional<at::Tensor>(in_proj->bias.narrow(0, begin, I)) : c10::nullopt;
    return linear_to_channels(hidden, w_half, b_half, in_rule);                    // (B, I, L)
  };
  const SsmBranch w = branch();
  const at::Tensor y = state ? ssm_branch_prefill(half(0), half(I), mask, w, *state)
                             : ssm_branch_forward(half(0), half(I), mask, w, ctx);  // (B, I, L)
  return linear_from_channels(y, out_proj->weight, out_proj->opt_bias(), comp.rule_for("out_proj"));  // (B, L, H)
}

at::Tensor MambaMixerImpl::step(const at::Tensor& hidden, SsmState& state) {
  const int64_t I = config_.intermediate_size();
  // rules::linear_with_rule under LRP-0 is the plain layer, as a matrix-vector product for
  // one row (batch 1): a GEMM would have OpenBLAS pack the whole weight for every token.
  const rules::LayerRule plain;
  const at::Tensor xz = rules::linear_with_rule(hidden, in_proj->weight, in_proj->opt_bias(), plain);  // (B, 2I)
  const at::Tensor y = ssm_branch_step(xz.narrow(1, 0, I), xz.narrow(1, I, I), branch(), state);  // (B, I)
  return rules::linear_with_rule(y, out_proj->weight, out_proj->opt_bias(), plain);  // (B, H)
}

// ---- Block, backbone, LM ----------------------------------------------------------------------

MambaBlockImpl::MambaBlockImpl(const MambaConfig& c) : residual_in_fp32_(c.residual_in_fp32()) {
  norm = register_module("norm", RMSNorm(c.hidden_size(), c.layer_norm_epsilon()));
  if (c.is_mamba2())
    mixer2 = register_module("mixer", Mamba2Mixer(c));
  else
    mixer = register_module("mixer", MambaMixer(c));
}

at::Tensor MambaBlockImpl::forward(const at::Tensor& hidden, const at::Tensor& mask, const PropagationContext& ctx,
                                   SsmState* state) {
  // The residual stays in at least float32 (residual_in_fp32 matters for half models only;
  // a float64 model keeps float64 throughout).
  at::Tensor residual = hidden;
  if (residual_in_fp32_ && at::elementSize(hidden.scalar_type()) < 4) residual = residual.to(at::kFloat);
  const at::Tensor normed = norm->forward(hidden, ctx.rules.norm);
  const at::Tensor out = !mixer2 ? mixer->forward(normed, mask, ctx, state)
                         : state ? mixer2->prefill(normed, mask, *state)
                                 : mixer2->forward(normed, mask, ctx);  // (B, L, H)
  return residual + out;
}

at::Tensor MambaBlockImpl::step(const at::Tensor& hidden, SsmState& state) {
  at::Tensor residual = hidden;  // (B, H), kept as in forward
  if (residual_in_fp32_ && at::elementSize(hidden.scalar_type()) < 4) residual = residual.to(at::kFloat);
  const at::Tensor normed = norm->forward(hidden, false);
  return residual + (mixer2 ? mixer2->step(normed, state) : mixer->step(normed, state));
}

MambaModelImpl::MambaModelImpl(const MambaConfig& c) {
  embeddings = register_module("embeddings", Weights(std::vector<int64_t>{c.vocab_size(), c.hidden_size()}, 0));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers(); ++i) layers->push_back(MambaBlock(c));
  norm_f = register_module("norm_f", RMSNorm(c.hidden_size(), c.layer_norm_epsilon()));
}

at::Tensor MambaModelImpl::forward_embeds(const at::Tensor& embeds, const at::Tensor& mask,
                                          const PropagationContext& ctx, std::vector<SsmState>* states) {
  at::Tensor h = embeds;  // (B, L, H)
  if (states) states->assign(layers->size(), SsmState{});
  for (size_t i = 0; i < layers->size(); ++i)
    h = layers[i]->as<MambaBlock>()->forward(h, mask, ctx, states ? &(*states)[i] : nullptr);
  return norm_f->forward(h, ctx.rules.norm);
}

MambaForCausalLMImpl::MambaForCausalLMImpl(const MambaConfig& c) : config_(c) {
  backbone = register_module("backbone", MambaModel(c));
  const bool tied = c.tie_word_embeddings() && c.num_outputs() == c.vocab_size();
  if (!tied)
    lm_head = register_module("lm_head", Weights(std::vector<int64_t>{c.num_outputs(), c.hidden_size()}, 0));
}

at::Tensor MambaForCausalLMImpl::head_weight() {
  return lm_head ? lm_head->weight : backbone->embeddings->weight;
}

at::Tensor MambaForCausalLMImpl::embed(const at::Tensor& input_ids) {
  return at::embedding(backbone->embeddings->weight, input_ids);  // (B, L, H)
}

at::Tensor MambaForCausalLMImpl::hidden_states(const at::Tensor& embeds, const at::Tensor& mask) {
  return backbone->forward_embeds(embeds, mask, ctx_);  // (B, L, H)
}

at::Tensor MambaForCausalLMImpl::head(const at::Tensor& hidden) {
  return rules::linear_with_rule(hidden, head_weight(), c10::nullopt, ctx_.composite.rule_for("head"));  // (..., V)
}

at::Tensor MambaForCausalLMImpl::forward_embeds(const at::Tensor& embeds, const at::Tensor& mask) {
  return head(hidden_states(embeds, mask));  // (B, L, V)
}

at::Tensor MambaForCausalLMImpl::forward(const at::Tensor& input_ids, const at::Tensor& mask) {
  return forward_embeds(embed(input_ids), mask);
}

at::Tensor MambaForCausalLMImpl::prefill(const at::Tensor& input_ids, const at::Tensor& mask,
                                         std::vector<SsmState>& state) {
  at::NoGradGuard no_grad;
  const at::Tensor embeds = embed(input_ids);                                       // (B, L, H)
  const at::Tensor m = mask.defined() ? mask.to(embeds.scalar_type()) : at::Tensor();
  const at::Tensor hidden = backbone->forward_embeds(embeds, m, PropagationContext{}, &state);  // (B, L, H)
  return rules::linear_with_rule(hidden.select(1, hidden.size(1) - 1), head_weight(), c10::nullopt,
                                 rules::LayerRule{});                              // (B, V)
}

at::Tensor MambaForCausalLMImpl::step(const at::Tensor& ids, std::vector<SsmState>& state) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(state.size() == backbone->layers->size(), "step: the state has ", state.size(), " layers, the model ",
              backbone->layers->size(), " (prefill first)");
  at::Tensor h = embed(ids);                                                        // (B, H)
  for (size_t i = 0; i < state.size(); ++i) h = backbone->layers[i]->as<MambaBlock>()->step(h, state[i]);
  return rules::linear_with_rule(backbone->norm_f->forward(h, false), head_weight(), c10::nullopt,
                                 rules::LayerRule{});                              // (B, V)
}

std::vector<at::Tensor> MambaForCausalLMImpl::biases() { return bias_parameters(*this); }

// ---- Loading -------------------------------------------------------------------------------------

namespace {

// Which file the weights come from, for messages.
std::string weights_origin(const std::filesystem::path& dir) {
  for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                           "pytorch_model.bin.index.json"})
    if (std::filesystem::exists(dir / name)) return (dir / name).string();
  return dir.string();
}

// The tensors that hold nearly all of a model's memory, with the shapes `c` implies (as the
// constructors above make them).
ExpectedShapes largest_tensors(const MambaConfig& c) {
  const int64_t H = c.hidden_size(), I = c.intermediate_size(), N = c.state_size(), R = c.time_step_rank();
  ExpectedShapes out{{"backbone.embeddings.weight", {c.vocab_size(), H}}};
  for (int64_t i = 0; i < c.num_hidden_layers() && c.is_mamba2(); ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".mixer.";
    out.push_back({p + "in_proj.weight", {I + c.conv_dim() + c.num_heads(), H}});
    out.push_back({p + "conv1d.weight", {c.conv_dim(), 1, c.conv_kernel()}});
    out.push_back({p + "out_proj.weight", {H, I}});
  }
  for (int64_t i = 0; i < c.num_hidden_layers() && !c.is_mamba2(); ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".mixer.";
    out.push_back({p + "in_proj.weight", {2 * I, H}});
    out.push_back({p + "conv1d.weight", {I, 1, c.conv_kernel()}});
    out.push_back({p + "x_proj.weight", {R + 2 * N, I}});
    out.push_back({p + "dt_proj.weight", {I, R}});
    out.push_back({p + "A_log", {I, N}});
    out.push_back({p + "out_proj.weight", {H, I}});
  }
  return out;
}

// Mamba-2's in_proj may carry an MLP's two halves (d_mlp rows each) in front of z: the
// checkpoint's row count tells, and such a model is refused by name.
void refuse_mamba2_mlp(const io::StateDict& sd, const MambaConfig& c, const std::string& origin) {
  const int64_t expected = c.intermediate_size() + c.conv_dim() + c.num_heads();
  auto it = sd.find("backbone.layers.0.mixer.in_proj.weight");
  if (it == sd.end() || it->second.dim() != 2) return;  // reported by the shape check
  const int64_t rows = it->second.size(0);
  if (rows > expected && (rows - expected) % 2 == 0)
    throw io::InputError(origin + ": tensor 'backbone.layers.0.mixer.in_proj.weight' has " + std::to_string(rows) +
                         " rows, " + std::to_string(expected) + " expected: an extra MLP split (d_mlp = " +
                         std::to_string((rows - expected) / 2) + ") is not supported");
}

}  // namespace

MambaForCausalLM load_mamba_lm(const std::string& model_dir, at::ScalarType dtype) {
  namespace fs = std::filesystem;
  if (dtype != at::kFloat && dtype != at::kDouble)
    throw io::InputError("model dtype must be float32 or float64");
  const fs::path dir(model_dir);
  if (!fs::is_directory(dir)) throw io::InputError(model_dir + ": not a model directory");
  MambaConfig config = MambaConfig::from_file((dir / "config.json").string());
  io::StateDict sd = io::load_state_dict(model_dir, dtype);
  const std::string origin = weights_origin(dir);

  if (config.state_spaces_names()) {
    auto it = sd.find("backbone.embedding.weight");
    if (it != sd.end()) {
      sd["backbone.embeddings.weight"] = it->second;
      sd.erase(it);
    }
  }
  // The head decides between language model (vocab rows, possibly tied) and classifier.
  auto head = sd.find("lm_head.weight");
  if (head != sd.end()) {
    const int64_t rows = head->second.dim() == 2 ? head->second.size(0) : -1;
    if (rows < 1 || head->second.size(1) != config.hidden_size())
      throw io::InputError(origin + ": tensor 'lm_head.weight': expected shape [rows, " +
                       std::to_string(config.hidden_size()) + "], got " + io::shape_str(head->second));
    config.num_outputs(rows);
    if (rows == config.vocab_size() && config.tie_word_embeddings()) sd.erase(head);  // tied: the embedding serves
  } else if (!config.tie_word_embeddings()) {
    throw io::InputError(origin + ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)");
  }

  if (config.is_mamba2()) refuse_mamba2_mlp(sd, config, origin);
  check_shapes_before_building(sd, largest_tensors(config), origin);
  MambaForCausalLM model(config);
  assign_state_dict(*model, sd, dtype, origin);
  model->eval();
  return model;
}

}  // namespace mamba_lrp
