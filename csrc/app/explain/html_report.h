// Standalone HTML page of a text explanation: each token shaded red (positive relevance)
// or blue (negative) on a symmetric scale, as the paper's Figure 4.
#pragma once
#include <string>
#include <vector>

namespace mamba_lrp {

struct TextHeatmapRow {
  std::vector<std::string> tokens;  // display text of each token (UTF-8)
  std::vector<double> relevance;    // one per token
  std::string target_label;         // e.g. "token 42 ' the'" or "class 1"
  double logit = 0;
  double relevance_sum = 0;
};

std::string text_heatmap_html(const std::string& title, const std::string& method,
                              const std::vector<TextHeatmapRow>& rows);

// Relevance in [-1, 1] (after dividing by the row's max |R|) to a CSS background colour:
// white at 0, red (255, 0, 0) at +1, blue (0, 0, 255) at -1.
std::string shade(double v);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string html_escape(const std::string& s);

}  // namespace mamba_lrp
