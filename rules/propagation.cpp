#include "rules/propagation.h"

#include <torch/autograd.h>

#include <fstream>
#include <sstream>

#include "csrc/io/errors.h"
#include "csrc/io/json_file.h"
#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace rules {

RuleSet rules_of(Propagation p) {
  switch (p) {
    case Propagation::kStandard: return {false, false, false, false};
    case Propagation::kMambaLRP: return {true, true, true, true};
    case Propagation::kNoSilu: return {false, true, true, true};
    case Propagation::kNoSsm: return {true, false, true, true};
    case Propagation::kNoGate: return {true, true, false, true};
    case Propagation::kLrpLn: return {false, false, false, true};
  }
  return {};
}

namespace {
const std::vector<std::pair<std::string, Propagation>>& propagation_names() {
  static const std::vector<std::pair<std::string, Propagation>> names = {
      {"standard", Propagation::kStandard},         {"mambalrp", Propagation::kMambaLRP},
      {"mambalrp-no-silu", Propagation::kNoSilu},   {"mambalrp-no-ssm", Propagation::kNoSsm},
      {"mambalrp-no-gate", Propagation::kNoGate},   {"lrp-ln", Propagation::kLrpLn}};
  return names;
}
}  // namespace

Propagation parse_propagation(const std::string& name) {
  if (name == "gi") return Propagation::kStandard;
  for (const auto& [n, p] : propagation_names())
    if (n == name) return p;
  std::string all;
  for (const auto& [n, p] : propagation_names()) all += (all.empty() ? "" : ", ") + n;
  throw io::InputError("unknown propagation mode '" + name + "' (expected one of: " + all + ", gi)");
}

std::string propagation_name(Propagation p) {
  for (const auto& [n, q] : propagation_names())
    if (q == p) return n;
  return "?";
}

const std::vector<std::string>& Composite::roles() {
  static const std::vector<std::string> r = {"in_proj", "x_proj", "dt_proj", "out_proj", "conv1d", "patch_embed", "head"};
  return r;
}

Composite Composite::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw io::InputError(origin + ": a composite must be a JSON object from layer role to rule");
  Composite c;
  for (const auto& item : j.items()) {
    // Named references, not structured bindings: C++17 lambdas (number, below) cannot capture those.
    const std::string& role = item.key();
    const nlohmann::json& spec = item.value();
    const auto& known = roles();
    if (std::find(known.begin(), known.end(), role) == known.end()) {
      std::string all;
      for (const auto& r : known) all += (all.empty() ? "" : ", ") + r;
      throw io::InputError(origin + ": unknown layer role '" + role + "' (expected one of: " + all + ")");
    }
    if (!spec.is_object() || !spec.contains("rule") || !spec["rule"].is_string())
      throw io::InputError(origin + ": role '" + role + "' needs an object with a \"rule\" string");
    const std::string rule = spec["rule"].get<std::string>();
    LayerRule lr;
    auto number = [&](const char* key, double fallback) {
      if (!spec.contains(key)) return fallback;
      if (!spec[key].is_number()) throw io::InputError(origin + ": role '" + role + "': \"" + key + "\" must be a number");
      const double v = spec[key].get<double>();
      if (!std::isfinite(v) || v < 0)
        throw io::InputError(origin + ": role '" + role + "': \"" + key + "\" must be finite and >= 0");
      return v;
    };
    if (rule == "gamma") {
      lr.kind = LayerRule::Kind::kGamma;
      lr.gamma = number("gamma", 0.25);
    } else if (rule == "epsilon") {
      lr.kind = LayerRule::Kind::kEpsilon;
      lr.epsilon = number("epsilon", 1e-6);
    } else if (rule == "lrp0" || rule == "lrp-0" || rule == "zero") {
      lr.kind = LayerRule::Kind::kLrp0;
    } else {
      throw io::InputError(origin + ": role '" + role + "': unknown rule '" + rule + "' (expected gamma, epsilon or lrp0)");
    }
    c.by_role_[role] = lr;
  }
  return c;
}

Composite Composite::from_file(const std::string& path) {
  return from_json(io::read_json_file(path, "the composite file"), path);
}

LayerRule Composite::rule_for(const std::string& role) const {
  auto it = by_role_.find(role);
  return it == by_role_.end() ? LayerRule{} : it->second;
}

void Composite::set(const std::string& role, LayerRule rule) { by_role_[role] = rule; }

at::Tensor linear_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            const LayerRule& rule) {
  switch (rule.kind) {
    case LayerRule::Kind::kGamma: return ops::linear_gamma(x, weight, bias, rule.gamma);
    case LayerRule::Kind::kEpsilon: return ops::linear_epsilon(x, weight, bias, rule.epsilon);
    default: break;
  }
  if (x.dim() >= 1 && x.numel() == x.size(-1)) {
    // One row (the LM head at the explained position, batch 1): a matrix-vector product.
    // As a GEMM, OpenBLAS would pack the whole weight first, forward and backward, a copy
    // of a vocabulary-sized matrix for one row, which the product itself reads only once.
    at::Tensor y = at::mv(weight, x.reshape({-1}));
    if (bias) y = y + *bias;
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return y.view(shape);
  }
  return at::linear(x, weight, bias);
}

at::Tensor conv1d_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            int64_t padding, int64_t groups, const LayerRule& rule) {
  switch (rule.kind) {
    case LayerRule::Kind::kGamma: return ops::conv1d_gamma(x, weight, bias, 1, padding, 1, groups, rule.gamma);
    case LayerRule::Kind::kEpsilon: return ops::conv1d_epsilon(x, weight, bias, 1, padding, 1, groups, rule.epsilon);
    default: return at::conv1d(x, weight, bias, 1, padding, 1, groups);
  }
}

at::Tensor conv2d_with_rule(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, const LayerRule& rule) {
  switch (rule.kind) {
    case LayerRule::Kind::kGamma: return ops::conv2d_gamma(x, weight, bias, stride, {0, 0}, {1, 1}, 1, rule.gamma);
    case LayerRule::Kind::kEpsilon: return ops::conv2d_epsilon(x, weight, bias, stride, {0, 0}, {1, 1}, 1, rule.epsilon);
    default: return at::conv2d(x, weight, bias, stride);
  }
}

}  // namespace rules
}  // namespace mamba_lrp
