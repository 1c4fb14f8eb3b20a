// Initialisation of freshly built models for training, as Mamba and Vim initialise theirs.
// A MambaForCausalLM is built with uninitialised weights (the loader normally fills them);
// these functions give every parameter a value drawn from torch's global generator, so
// torch::manual_seed(seed) before the call makes the result reproducible.
#pragma once
#include "models/mamba.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {

// Mamba (state-spaces/mamba's MambaLMHeadModel as Hugging Face trains it):
//   A_log = log(1..N) per channel (S4D-real), D = 1;
//   dt_proj.bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max] (clamped below at 1e-4),
//   dt_proj.weight uniform in +-dt_rank^-0.5;
//   every other linear weight (in_proj, x_proj, out_proj, lm_head) kaiming-uniform as
//   torch.nn.Linear (bound 1/sqrt(fan_in)), their biases uniform in +-1/sqrt(fan_in);
//   the depthwise conv1d as torch.nn.Conv1d (fan_in = kernel size);
//   the embedding normal(0, 0.02); RMSNorm weights 1.
void init_mamba_lm(MambaForCausalLM& model, double dt_min = 1e-3, double dt_max = 1e-1);

// Vim (hustvl/Vim's VisionMamba): the same SSM initialisation for both directions
// (A_log, A_b_log, D, D_b, dt_proj, dt_proj_b), linear / conv layers as torch.nn's defaults,
// cls_token and pos_embed normal(0, 0.02), the head weight normal(0, 0.02) with a zero
// bias, norms weight 1 (bias 0).
void init_vision_mamba(VisionMamba& model, double dt_min = 1e-3, double dt_max = 1e-1);

}  // namespace mamba_lrp
