// The weight (and optional bias) of a linear map, convolution or embedding: the parameter
// holder of every model's layers (Mamba-1, Mamba-2, Vision Mamba).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace mamba_lrp {

// Allocated without initialisation: a model is built to be filled by the loader, and an
// initialisation of 130M parameters would cost more than reading them.
class WeightsImpl : public torch::nn::Module {
 public:
  WeightsImpl(std::vector<int64_t> weight_shape, int64_t bias_size /* 0: no bias */);
  c10::optional<at::Tensor> opt_bias() const { return bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt; }
  at::Tensor weight, bias;  // bias undefined when absent
};
TORCH_MODULE(Weights);

}  // namespace mamba_lrp
