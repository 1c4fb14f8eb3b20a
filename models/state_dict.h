// Filling a module's parameters from a loaded state dict, and listing its biases: shared
// by the Mamba LM and Vision Mamba loaders.
#pragma once
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "csrc/io/checkpoint.h"

namespace mamba_lrp {

// Every parameter of `module` must be in `sd` with its shape; `sd` may hold nothing else.
// The loaded tensors (converted to `dtype`) become the parameters' data: no second copy.
// Parameters end up not requiring gradients. Errors are InputErrors naming `origin` and the
// tensor; `hint` is appended to missing/unexpected-tensor messages.
void assign_state_dict(torch::nn::Module& module, const io::StateDict& sd, at::ScalarType dtype,
                       const std::string& origin, const std::string& hint = "");

// Checked before a model is built from its config: the tensors that hold nearly all of its
// memory, with the shapes the config implies, must be in `sd` with those shapes. Building
// the model then allocates about what the weight file already holds, whatever sizes the
// config states (InputErrors worded as assign_state_dict's).
using ExpectedShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;
void check_shapes_before_building(const io::StateDict& sd, const ExpectedShapes& expected, const std::string& origin,
                                  const std::string& hint = "");

// Every parameter whose name ends in "bias" (what --zero-bias zeroes).
std::vector<at::Tensor> bias_parameters(const torch::nn::Module& module);

}  // namespace mamba_lrp
