// Shared shape of every LRP rule op: the forward is the plain layer (registered for
// CompositeExplicitAutograd, so any backend runs it), and the autograd kernel wraps it in
// a torch::autograd::Function whose backward is the rule.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <torch/autograd.h>

namespace mamba_lrp {
namespace rules {

using OptTensor = c10::optional<at::Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

inline OptTensor opt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; }
inline at::Tensor value_or_undefined(const OptTensor& t) { return t ? *t : at::Tensor(); }

}  // namespace rules
}  // namespace mamba_lrp
