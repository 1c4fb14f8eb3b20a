#include "models/init.h"

#include <torch/nn/init.h>

#include <cmath>

namespace mamba_lrp {

namespace {

// torch.nn.Linear / Conv's reset_parameters: kaiming_uniform(a = sqrt(5)), i.e. bound
// 1/sqrt(fan_in) for the weight, and the same bound for the bias.
void init_like_torch_nn(at::Tensor& weight, at::Tensor bias) {
  const int64_t fan_in = weight.numel() / weight.size(0);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

// Mamba's dt initialisation: the bias is softplus^-1 of dt, dt log-uniform in [dt_min,
// dt_max]; the weight uniform in +-dt_rank^-0.5.
void init_dt_proj(at::Tensor& weight, at::Tensor& bias, double dt_min, double dt_max) {
  const double std = std::pow(static_cast<double>(weight.size(1)), -0.5);
  weight.uniform_(-std, std);
  at::Tensor dt = at::exp(at::rand(bias.sizes(), bias.options()) * (std::log(dt_max) - std::log(dt_min)) +
                          std::log(dt_min))
                      .clamp_min(1e-4);                      // (I)
  bias.copy_(dt + at::log(-at::expm1(-dt)));                 // softplus^-1(dt)
}

void init_ssm_constants(at::Tensor& A_log, at::Tensor& D) {
  const int64_t N = A_log.size(1);
  A_log.copy_(at::log(at::arange(1, N + 1, A_log.options())).expand_as(A_log));  // (I, N)
  D.fill_(1.0);                                                                   // (I)
}

// mamba_ssm's Mamba2 initialisation: torch.nn defaults for the linear maps and the conv, dt
// log-uniform in [dt_min, dt_max] through dt_bias, A uniform in [1, 16], D = 1, norm 1.
void init_mamba2_mixer(Mamba2MixerImpl& m, double dt_min, double dt_max) {
  init_like_torch_nn(m.in_proj->weight, m.in_proj->bias);
  init_like_torch_nn(m.conv1d->weight, m.conv1d->bias);
  init_like_torch_nn(m.out_proj->weight, m.out_proj->bias);
  at::Tensor dt = at::exp(at::rand(m.dt_bias.sizes(), m.dt_bias.options()) * (std::log(dt_max) - std::log(dt_min)) +
                          std::log(dt_min))
                      .clamp_min(1e-4);                                   // (heads)
  m.dt_bias.copy_(dt + at::log(-at::expm1(-dt)));                         // softplus^-1(dt)
  m.A_log.copy_(at::log(at::empty_like(m.A_log).uniform_(1.0, 16.0)));  // (heads)
  m.D.fill_(1.0);
  m.norm->weight.fill_(1.0);
}

}  // namespace

void init_mamba_lm(MambaForCausalLM& model, double dt_min, double dt_max) {
  torch::NoGradGuard no_grad;
  model->backbone->embeddings->weight.normal_(0.0, 0.02);  // (V, H)
  for (const auto& layer : *model->backbone->layers) {
    auto block = layer->as<MambaBlock>();
    block->norm->weight.fill_(1.0);
    if (block->mixer2) {
      init_mamba2_mixer(*block->mixer2, dt_min, dt_max);
      continue;
    }
    auto& m = *block->mixer;
    init_like_torch_nn(m.in_proj->weight, m.in_proj->bias);
    init_like_torch_nn(m.conv1d->weight, m.conv1d->bias);  // (I, 1, K): fan_in K
    init_like_torch_nn(m.x_proj->weight, m.x_proj->bias);
    init_dt_proj(m.dt_proj->weight, m.dt_proj->bias, dt_min, dt_max);
    init_like_torch_nn(m.out_proj->weight, m.out_proj->bias);
    init_ssm_constants(m.A_log, m.D);
  }
  model->backbone->norm_f->weight.fill_(1.0);
  if (model->lm_head) init_like_torch_nn(model->lm_head->weight, at::Tensor());
}

void init_vision_mamba(VisionMamba& model, double dt_min, double dt_max) {
  torch::NoGradGuard no_grad;
  init_like_torch_nn(model->patch_embed->proj->weight, model->patch_embed->proj->bias);
  if (model->cls_token.defined()) model->cls_token.normal_(0.0, 0.02);
  if (model->pos_embed.defined()) model->pos_embed.normal_(0.0, 0.02);
  auto init_norm = [](VimNormImpl& n) {
    n.weight.fill_(1.0);
    if (n.bias.defined()) n.bias.zero_();
  };
  for (const auto& layer : *model->layers) {
    auto block = layer->as<VimBlock>();
    init_norm(*block->norm);
    auto& m = *block->mixer;
    init_like_torch_nn(m.in_proj->weight, m.in_proj->bias);
    init_like_torch_nn(m.out_proj->weight, m.out_proj->bias);
    init_like_torch_nn(m.conv1d->weight, m.conv1d->bias);
    init_like_torch_nn(m.x_proj->weight, m.x_proj->bias);
    init_dt_proj(m.dt_proj->weight, m.dt_proj->bias, dt_min, dt_max);
    init_ssm_constants(m.A_log, m.D);
    if (m.conv1d_b) {
      init_like_torch_nn(m.conv1d_b->weight, m.conv1d_b->bias);
      init_like_torch_nn(m.x_proj_b->weight, m.x_proj_b->bias);
      init_dt_proj(m.dt_proj_b->weight, m.dt_proj_b->bias, dt_min, dt_max);
      init_ssm_constants(m.A_b_log, m.D_b);
    }
  }
  init_norm(*model->norm_f);
  if (model->head) {
    model->head->weight.normal_(0.0, 0.02);
    model->head->bias.zero_();
  }
}

}  // namespace mamba_lrp
