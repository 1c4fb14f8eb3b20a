#include "csrc/app/generate/generation_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "csrc/app/explain/html_report.h"

namespace mamba_lrp {
namespace {

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

}  // namespace

std::string generation_html(const std::string& title, const std::string& method, const Generation& gen,
                            const std::vector<TokenExplanation>& explanations, const std::vector<std::string>& tokens) {
  const size_t P = gen.prompt_ids.size();
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << html_escape(title) << "</title>\n"
    << "<style>body{font-family:sans-serif;margin:2em}"
       ".text{font-family:monospace;font-size:16px;white-space:pre-wrap;max-width:60em}"
       ".gen{background:#ffe9a8}"
       "table.m{border-collapse:collapse;font-size:11px}"
       "table.m td,table.m th{border:1px solid #eee;padding:0}"
       "table.m td.c{width:14px;height:18px;min-width:14px}"
       "table.m th.col{writing-mode:vertical-rl;transform:rotate(180deg);font-family:monospace;font-weight:normal;"
       "padding:2px;max-height:8em;overflow:hidden}"
       "table.m td.meta{font-family:monospace;padding:0 6px;white-space:nowrap;text-align:right}"
       ".scale{display:inline-block;width:12em;height:1em;vertical-align:middle;"
       "background:linear-gradient(to right,rgb(0,0,255),white,rgb(255,0,0));border:1px solid #999}</style>"
       "</head><body>\n";
  h << "<h1>" << html_escape(title) << "</h1>\n<div class=\"text\">";
  for (size_t i = 0; i < tokens.size(); ++i)
    h << (i >= P ? "<span class=\"gen\">" : "<span>") << html_escape(tokens[i]) << "</span>";
  h << "</div>\n<p>" << P << " prompt tokens, <span class=\"gen\">" << gen.generated_ids.size()
    << " generated</span> (greedy).</p>\n";
  if (explanations.empty()) {
    h << "</body></html>\n";
    return h.str();
  }
  const size_t cols = explanations.back().relevance.size();
  h << "<h2>Where each generated token's evidence lies</h2>\n<p>method: <b>" << html_escape(method)
    << "</b> &nbsp; <span class=\"scale\"></span> negative &ndash; 0 &ndash; positive (each row on its own symmetric "
       "scale, &plusmn; max |R|). Row k: the generated token, predicted at position P&minus;1+k from the context to its "
       "left. d50 / d90: the distance back (in tokens, 0 = the last context token) within which half / 90 % of the "
       "row's |R| lies.</p>\n<table class=\"m\"><tr><th>token</th><th>logit</th><th>&Sigma; R</th><th>d50</th>"
       "<th>d90</th>";
  for (size_t j = 0; j < cols; ++j) h << "<th class=\"col\">" << html_escape(tokens[j]) << "</th>";
  h << "</tr>\n";
  for (size_t k = 0; k < explanations.size(); ++k) {
    const TokenExplanation& e = explanations[k];
    double scale = 0;
    for (double v : e.relevance) scale = std::max(scale, std::abs(v));
    if (scale == 0) scale = 1;
    h << "<tr id=\"gen" << k << "\"><td class=\"meta\">" << html_escape(tokens[P + k]) << "</td><td class=\"meta\">"
      << fmt(e.logit) << "</td><td class=\"meta\">" << fmt(e.relevance_sum) << "</td><td class=\"meta\">"
      << e.distance_median << "</td><td class=\"meta\">" << e.distance_p90 << "</td>";
    for (size_t j = 0; j < cols; ++j) {
      if (j < e.relevance.size())
        h << "<td class=\"c\" data-relevance=\"" << fmt(e.relevance[j]) << "\" title=\""
          << html_escape(tokens[j]) << ": R = " << fmt(e.relevance[j]) << "\" style=\"background:"
          << shade(e.relevance[j] / scale) << "\"></td>";
      else
        h << "<td class=\"c\" style=\"background:#f4f4f4\"></td>";  // after the predicting position
    }
    h << "</tr>\n";
  }
  h << "</table>\n</body></html>\n";
  return h.str();
}

}  // namespace mamba_lrp
