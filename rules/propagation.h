// Which LRP rules a model applies in its backward (DESIGN.md §1), and composites: which
// rule each layer role (in_proj, x_proj, dt_proj, out_proj, conv1d, patch_embed, head)
// uses for its linear map.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mamba_lrp {
namespace rules {

// One switch per model. Forward values are identical in every mode.
enum class Propagation {
  kStandard,   // true gradients: training, and Gradient x Input (GI)
  kMambaLRP,   // every rule: SiLU identity, SSM, gate half, norm
  kNoSilu,     // MambaLRP without the SiLU rule
  kNoSsm,      // MambaLRP without the SSM rule
  kNoGate,     // MambaLRP without the gate rule
  kLrpLn,      // only the norm rule ("LRP (LN-rule)")
};

struct RuleSet {
  bool silu = false, ssm = false, gate = false, norm = false;
};

RuleSet rules_of(Propagation p);
// "standard" (alias "gi"), "mambalrp", "mambalrp-no-silu", "mambalrp-no-ssm",
// "mambalrp-no-gate", "lrp-ln". Throws io::InputError naming the accepted names otherwise.
Propagation parse_propagation(const std::string& name);
std::string propagation_name(Propagation p);

// The rule on one linear map (Linear or Conv).
struct LayerRule {
  enum class Kind { kLrp0, kGamma, kEpsilon } kind = Kind::kLrp0;
  double gamma = 0.25;
  double epsilon = 1e-6;
};

// Layer role -> rule; roles not named use LRP-0 (the plain gradient).
class Composite {
 public:
  static const std::vector<std::string>& roles();
  // {"conv1d": {"rule": "gamma", "gamma": 0.25}, "out_proj": {"rule": "epsilon", "epsilon": 1e-6}}
  // `origin` names the file in error messages.
  static Composite from_json(const nlohmann::json& j, const std::string& origin);
  static Composite from_file(const std::string& path);
  LayerRule rule_for(const std::string& role) const;
  void set(const std::string& role, LayerRule rule);
  bool empty() const { return by_role_.empty(); }

 private:
  std::map<std::string, LayerRule> by_role_;
};

// A linear map with its role's rule in the backward. The forward is always the plain layer.
at::Tensor linear_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            const LayerRule& rule);
at::Tensor conv1d_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            int64_t padding, int64_t groups, const LayerRule& rule);
at::Tensor conv2d_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, const LayerRule& rule);

}  // namespace rules
}  // namespace mamba_lrp
