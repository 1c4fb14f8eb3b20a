#include "models/vision_mamba.h"

#include <filesystem>
#include <set>
#include <sstream>

#include <torch/autograd.h>

#include "csrc/io/errors.h"
#include "csrc/io/checkpoint.h"
#include "csrc/ops/ops.h"
#include "models/channel_layout.h"
#include "models/state_dict.h"

namespace mamba_lrp {

// ---- Modules ----------------------------------------------------------------------------------

VimNormImpl::VimNormImpl(int64_t dim, double eps, bool rms) : eps_(eps), rms_(rms) {
  weight = register_parameter("weight", torch::ones({dim}));
  if (!rms) bias = register_parameter("bias", torch::zeros({dim}));
}

at::Tensor VimNormImpl::forward(const at::Tensor& x, bool norm_rule) {
  if (rms_) {
    if (norm_rule) return ops::rms_norm_identity(x, weight, eps_);
    return x * at::rsqrt(x.square().mean(-1, true) + eps_) * weight;
  }
  if (norm_rule) return ops::layer_norm_identity(x, weight, bias, eps_);
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps_);
}

VimMixerImpl::VimMixerImpl(const VimConfig& c) : config_(c) {
  const int64_t H = c.embed_dim(), I = c.d_inner(), N = c.d_state(), R = c.dt_rank(), K = c.d_conv();
  using torch::nn::Conv1dOptions;
  using torch::nn::LinearOptions;
  in_proj = register_module("in_proj", torch::nn::Linear(LinearOptions(H, 2 * I).bias(false)));
  auto conv = [&] { return torch::nn::Conv1d(Conv1dOptions(I, I, K).groups(I).padding(K - 1).bias(true)); };
  conv1d = register_module("conv1d", conv());
  x_proj = register_module("x_proj", torch::nn::Linear(LinearOptions(I, R + 2 * N).bias(false)));
  dt_proj = register_module("dt_proj", torch::nn::Linear(LinearOptions(R, I).bias(true)));
  A_log = register_parameter("A_log", torch::log(torch::arange(1, N + 1, torch::kFloat32)).repeat({I, 1}));
  D = register_parameter("D", torch::ones({I}));
  if (c.bidirectional()) {
    conv1d_b = register_module("conv1d_b", conv());
    x_proj_b = register_module("x_proj_b", torch::nn::Linear(LinearOptions(I, R + 2 * N).bias(false)));
    dt_proj_b = register_module("dt_proj_b", torch::nn::Linear(LinearOptions(R, I).bias(true)));
    A_b_log = register_parameter("A_b_log", torch::log(torch::arange(1, N + 1, torch::kFloat32)).repeat({I, 1}));
    D_b = register_parameter("D_b", torch::ones({I}));
  }
  out_proj = register_module("out_proj", torch::nn::Linear(LinearOptions(I, H).bias(false)));
}

namespace {
c10::optional<at::Tensor> opt(const at::Tensor& t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; }

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a + flip(b) along L into out; either may be undefined (both: zeros).
void add_flipped_into(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (b.defined()) ops::_flip_add_into(out, b, opt(a));
  else if (a.defined()) out.copy_(a);
  else out.zero_();
}

// The inputs of both scan directions from in_proj's output xz (B, 2I, L): x and z, and the
// same halves of the time-flipped xz. One node, so that the backward writes the gradient of
// xz once (dx + flip(dx_b) | dz + flip(dz_b)) instead of concatenating, flipping and adding
// two full-size gradients.
class BidirectionalSplit : public torch::autograd::Function<BidirectionalSplit> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& xz) {
    const int64_t I = xz.size(1) / 2;
    const at::Tensor flipped = ops::_flip_add(xz);
    return {xz.narrow(1, 0, I), xz.narrow(1, I, I), flipped.narrow(1, 0, I), flipped.narrow(1, I, I)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& any = grads[0].defined() ? grads[0] : grads[1].defined() ? grads[1] : grads[2].defined() ? grads[2] : grads[3];
    if (!any.defined()) return {at::Tensor()};
    const int64_t I = any.size(1);
    at::Tensor dxz = at::empty({any.size(0), 2 * I, any.size(2)}, any.options());
    add_flipped_into(dxz.narrow(1, 0, I), grads[0], grads[2]);
    add_flipped_into(dxz.narrow(1, I, I), grads[1], grads[3]);
    return {dxz};
  }
};

// Both directions' outputs in sequence order: (y + flip(y_b)) * scale.
class BidirectionalMerge : public torch::autograd::Function<BidirectionalMerge> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& y_b, double scale) {
    ctx->saved_data["scale"] = scale;
    return ops::_flip_add(y_b, y, scale);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const double scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor& g = grads[0];
    return {scale == 1.0 ? g : g * scale, ops::_flip_add(g, c10::nullopt, scale), at::Tensor()};
  }
};
}  // namespace

at::Tensor VimMixerImpl::forward(const at::Tensor& hidden, const PropagationContext& ctx) {
  const rules::Composite& comp = ctx.composite;
  // (B, 2I, L): the x and z halves dense along L for conv and scan
  const at::Tensor xz = linear_to_channels(hidden, in_proj->weight, opt(in_proj->bias), comp.rule_for("in_proj")).contiguous();
  const SsmBranch fwd{conv1d->weight, opt(conv1d->bias), x_proj->weight, dt_proj->weight, opt(dt_proj->bias), A_log, D};
  at::Tensor y;  // (B, I, L)
  if (config_.bidirectional()) {
    const SsmBranch bwd{conv1d_b->weight, opt(conv1d_b->bias), x_proj_b->weight, dt_proj_b->weight,
                        opt(dt_proj_b->bias), A_b_log, D_b};
    const variable_list in = BidirectionalSplit::apply(xz);  // x, z, and both flipped: (B, I, L) x 4
    const at::Tensor y_f = ssm_branch_forward(in[0], in[1], at::Tensor(), fwd, ctx);
    const at::Tensor y_b = ssm_branch_forward(in[2], in[3], at::Tensor(), bwd, ctx);
    y = BidirectionalMerge::apply(y_f, y_b, config_.if_divide_out() ? 0.5 : 1.0);
  } else {
    // chunk, not two narrows: its backward is one concatenation instead of two zero-filled copies
    const auto x_z = xz.chunk(2, 1);                                                                         // (B, I, L) x 2
    y = ssm_branch_forward(x_z[0], x_z[1], at::Tensor(), fwd, ctx);
  }
  return linear_from_channels(y, out_proj->weight, opt(out_proj->bias), comp.rule_for("out_proj"));  // (B, L, D)
}

VimBlockImpl::VimBlockImpl(const VimConfig& c) : residual_in_fp32_(c.residual_in_fp32()) {
  norm = register_module("norm", VimNorm(c.embed_dim(), c.norm_epsilon(), c.rms_norm()));
  mixer = register_module("mixer", VimMixer(c));
}

std::pair<at::Tensor, at::Tensor> VimBlockImpl::forward(const at::Tensor& hidden, const at::Tensor& residual_in,
                                                        const PropagationContext& ctx) {
  at::Tensor residual = residual_in.defined() ? residual_in + hidden : hidden;  // (B, L, D)
  // residual_in_fp32 matters for half models only; float32/float64 stay as they are.
  if (residual_in_fp32_ && at::elementSize(residual.scalar_type()) < 4) residual = residual.to(at::kFloat);
  at::Tensor out = mixer->forward(norm->forward(residual.to(hidden.scalar_type()), ctx.rules.norm), ctx);  // (B, L, D)
  return {out, residual};
}

VimPatchEmbedImpl::VimPatchEmbedImpl(const VimConfig& c) : stride_(c.stride()) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_chans(), c.embed_dim(), c.patch_size())
                                                       .stride(c.stride())
                                                       .bias(true)));
}

at::Tensor VimPatchEmbedImpl::forward(const at::Tensor& pixels, const PropagationContext& ctx) {
  at::Tensor p = rules::conv2d_with_rule(pixels, proj->weight, opt(proj->bias), {stride_, stride_},
                                  ctx.composite.rule_for("patch_embed"));  // (B, D, rows, cols)
  return p.flatten(2).transpose(1, 2);                                      // (B, P, D)
}

VisionMambaImpl::VisionMambaImpl(const VimConfig& c) : config_(c) {
  const int64_t H = c.embed_dim();
  patch_embed = register_module("patch_embed", VimPatchEmbed(c));
  if (c.if_cls_token()) cls_token = register_parameter("cls_token", torch::zeros({1, 1, H}));
  if (c.if_abs_pos_embed()) pos_embed = register_parameter("pos_embed", torch::zeros({1, c.num_tokens(), H}));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.depth(); ++i) layers->push_back(VimBlock(c));
  norm_f = register_module("norm_f", VimNorm(H, c.norm_epsilon(), c.rms_norm()));
  if (c.num_classes() > 0)
    head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(H, c.num_classes()).bias(true)));
}

at::Tensor VisionMambaImpl::tokens(const at::Tensor& pixel_values) {
  at::Tensor x = patch_embed->forward(pixel_values, ctx_);  // (B, P, D)
  const int64_t pos = config_.cls_position();
  if (pos >= 0) {
    const at::Tensor cls = cls_token.expand({x.size(0), 1, x.size(2)});  // (B, 1, D)
    x = at::cat({x.narrow(1, 0, pos), cls, x.narrow(1, pos, x.size(1) - pos)}, 1);  // (B, T, D)
  }
  if (pos_embed.defined()) x = x + pos_embed;  // (B, T, D)
  return x;
}

at::Tensor VisionMambaImpl::forward_tokens(const at::Tensor& tokens) {
  at::Tensor hidden = tokens, residual;  // (B, T, D)
  for (const auto& layer : *layers) std::tie(hidden, residual) = layer->as<VimBlock>()->forward(hidden, residual, ctx_);
  residual = residual.defined() ? residual + hidden : hidden;
  at::Tensor h = norm_f->forward(residual.to(tokens.scalar_type()), ctx_.rules.norm);  // (B, T, D)
  const int64_t pos = config_.cls_position();
  const std::string& pool = config_.final_pool_type();
  at::Tensor feat;
  if (pos >= 0) feat = h.select(1, pos);            // (B, D): Vim reads the cls token whenever it has one
  else if (pool == "mean") feat = h.mean(1);        // (B, D)
  else if (pool == "none") feat = h.select(1, -1);  // (B, D)
  else feat = h;                                    // "max": (B, T, D)
  at::Tensor out = feat;
  if (head) out = rules::linear_with_rule(feat, head->weight, opt(head->bias), ctx_.composite.rule_for("head"));
  if (pos < 0 && pool == "max") out = std::get<0>(out.max(1));  // (B, classes)
  return out;
}

at::Tensor VisionMambaImpl::forward(const at::Tensor& pixel_values) { return forward_tokens(tokens(pixel_values)); }

std::vector<at::Tensor> VisionMambaImpl::biases() { return bias_parameters(*this); }

// ---- Loading -------------------------------------------------------------------------------------

namespace {

// The tensors that hold nearly all of a Vim model's memory, with the shapes `c` implies (as
// the constructors above make them).
ExpectedShapes largest_tensors(const VimConfig& c) {
  const int64_t E = c.embed_dim(), I = c.d_inner(), N = c.d_state(), R = c.dt_rank(), K = c.d_conv();
  ExpectedShapes out{{"patch_embed.proj.weight", {E, c.in_chans(), c.patch_size(), c.patch_size()}}};
  if (c.if_abs_pos_embed()) out.push_back({"pos_embed", {1, c.num_tokens(), E}});
  if (c.num_classes() > 0) out.push_back({"head.weight", {c.num_classes(), E}});
  for (int64_t i = 0; i < c.depth(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".mixer.";
    out.push_back({p + "in_proj.weight", {2 * I, E}});
    out.push_back({p + "out_proj.weight", {E, I}});
    for (const std::string b : {"", "_b"}) {
      if (!b.empty() && !c.bidirectional()) break;
      out.push_back({p + "conv1d" + b + ".weight", {I, 1, K}});
      out.push_back({p + "x_proj" + b + ".weight", {R + 2 * N, I}});
      out.push_back({p + "dt_proj" + b + ".weight", {I, R}});
      out.push_back({p + (b.empty() ? "A_log" : "A_b_log"), {I, N}});
    }
  }
  return out;
}

}  // namespace

VisionMamba load_vision_mamba(const std::string& dir_or_file, at::ScalarType dtype) {
  namespace fs = std::filesystem;
  if (dtype != at::kFloat && dtype != at::kDouble) throw io::InputError("model dtype must be float32 or float64");
  const fs::path given(dir_or_file);
  fs::path dir, weights;
  if (fs::is_directory(given)) {
    dir = given;
    for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                             "pytorch_model.bin.index.json"})
      if (fs::exists(dir / name)) {
        weights = dir / name;
        break;
      }
    if (weights.empty()) {
      // A Vim checkpoint as hustvl publishes it: one .pth (or .pt) in the directory.
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".pth" || ext == ".pt")) found.push_back(entry.path());
      }
      if (found.empty())
        throw io::InputError(dir.string() + ": no weights (model.safetensors or a Vim .pth checkpoint)");
      if (found.size() > 1)
        throw io::InputError(dir.string() + ": several .pth/.pt checkpoints; pass the one to use");
      weights = found[0];
    }
  } else if (fs::is_regular_file(given)) {
    weights = given;
    dir = given.has_parent_path() ? given.parent_path() : fs::path(".");
  } else {
    throw io::InputError(dir_or_file + ": not a model directory or checkpoint file");
  }
  const VimConfig config = VimConfig::from_file((dir / "config.json").string());
  io::StateDict sd = io::load_state_dict(weights.string(), dtype);
  const std::string origin = weights.string();

  if (!sd.count("patch_embed.proj.weight"))
    throw io::InputError(origin + ": missing tensor 'patch_embed.proj.weight': not a Vision Mamba checkpoint" +
                     (sd.empty() ? std::string(" (no tensors)") : " (it holds '" + sd.begin()->first + "', ...)"));
  check_shapes_before_building(sd, largest_tensors(config), origin, "a checkpoint of another model or configuration?");
  VisionMamba model(config);
  assign_state_dict(*model, sd, dtype, origin, "a checkpoint of another model or configuration?");
  model->eval();
  return model;
}

}  // namespace mamba_lrp
