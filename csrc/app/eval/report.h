// The outputs of mamba-lrp evaluate: a JSON report, a Markdown table and an SVG figure
// (flipping curves per method; the conservation scatter sum R against f, as Figure 3 of
// the MambaLRP paper, when MambaLRP and GI were both evaluated).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mamba_lrp {
namespace eval {

struct MethodCurves {
  std::string method;
  at::Tensor curves;  // (4, B, S): scores per curve (flipping.h's Curve), row and step
};

struct ConservationPoints {
  std::string method;
  std::vector<double> relevance_sum, logit;  // per row, with every bias zero
};

struct Report {
  std::string model, data, model_type, unit, baseline, score = "target logit";
  int64_t rows = 0, steps = 0;
  std::vector<MethodCurves> methods;
  std::vector<ConservationPoints> conservation;
};

nlohmann::json report_json(const Report& r);
std::string report_markdown(const Report& r);
std::string report_svg(const Report& r);

}  // namespace eval
}  // namespace mamba_lrp
