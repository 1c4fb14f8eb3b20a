// Filling a module's parameters from a loaded state dict, and listing its biases: shared
// by the Mamba LM and Vision Mamba loaders.
#pragma once
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "csrc/io/checkpoint.h"

namespace mamba_lrp {

// Every parameter of `module` must be in `sd` with its shape; `sd` may hold nothing else.
// The loaded tensors (converted to `dtype`) become the parameters' data: no second copy.
// Parameters end up not requiring gradients. Errors are InputErrors naming `origin` and the
// tensor; `hint` is appended to missing/unexpected-tensor messages.
void assign_state_dict(torch::nn::Module& module, const io::StateDict& sd, at::ScalarType dtype,
                       const std::string& origin, const std::string& hint = "");

// Every parameter whose name ends in "bias" (what --zero-bias zeroes).
std::vector<at::Tensor> bias_parameters(const torch::nn::Module& module);

}  // namespace mamba_lrp
