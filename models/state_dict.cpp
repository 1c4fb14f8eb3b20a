#include "models/state_dict.h"

#include <set>

#include "csrc/io/errors.h"

namespace mamba_lrp {

void assign_state_dict(torch::nn::Module& module, const io::StateDict& sd, at::ScalarType dtype,
                       const std::string& origin, const std::string& hint) {
  const std::string suffix = hint.empty() ? "" : " (" + hint + ")";
  torch::NoGradGuard no_grad;
  std::set<std::string> expected;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    expected.insert(name);
    auto it = sd.find(name);
    if (it == sd.end()) throw io::InputError(origin + ": missing tensor '" + name + "'" + suffix);
    if (it->second.sizes() != item.value().sizes())
      throw io::InputError(origin + ": tensor '" + name + "': expected shape " + io::shape_str(item.value()) + ", got " +
                       io::shape_str(it->second));
    if (!at::isFloatingType(it->second.scalar_type()))
      throw io::InputError(origin + ": tensor '" + name + "' must be floating point");
    item.value().set_data(it->second.to(dtype).contiguous());
  }
  for (const auto& [name, t] : sd)
    if (!expected.count(name)) throw io::InputError(origin + ": unexpected tensor '" + name + "'" + suffix);
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

void check_shapes_before_building(const io::StateDict& sd, const ExpectedShapes& expected, const std::string& origin,
                                  const std::string& hint) {
  const std::string suffix = hint.empty() ? "" : " (" + hint + ")";
  for (const auto& [name, shape] : expected) {
    auto it = sd.find(name);
    if (it == sd.end()) throw io::InputError(origin + ": missing tensor '" + name + "'" + suffix);
    if (it->second.sizes() != c10::IntArrayRef(shape))
      throw io::InputError(origin + ": tensor '" + name + "': expected shape " + io::shape_str(c10::IntArrayRef(shape)) +
                           " (from config.json), got " + io::shape_str(it->second));
  }
}

std::vector<at::Tensor> bias_parameters(const torch::nn::Module& module) {
  std::vector<at::Tensor> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.key().size() >= 4 && item.key().compare(item.key().size() - 4, 4, "bias") == 0) out.push_back(item.value());
  return out;
}

}  // namespace mamba_lrp
