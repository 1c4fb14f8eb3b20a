#include "csrc/app/explain/html_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace mamba_lrp {

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string shade(double v) {
  v = std::max(-1.0, std::min(1.0, v));
  const int fade = static_cast<int>(std::lround(255.0 * (1.0 - std::abs(v))));
  char buf[32];
  if (v >= 0) std::snprintf(buf, sizeof buf, "rgb(255,%d,%d)", fade, fade);
  else std::snprintf(buf, sizeof buf, "rgb(%d,%d,255)", fade, fade);
  return buf;
}

namespace {

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

}  // namespace

std::string text_heatmap_html(const std::string& title, const std::string& method,
                              const std::vector<TextHeatmapRow>& rows) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << html_escape(title) << "</title>\n"
    << "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
       ".row{margin:1.5em 0;padding:1em;border:1px solid #ccc;border-radius:6px}"
       ".tokens{font-family:monospace;font-size:18px;line-height:2.2;white-space:pre-wrap}"
       ".tok{padding:2px 1px;border-radius:3px}"
       ".meta{color:#333;margin-bottom:.6em}"
       ".scale{display:inline-block;width:12em;height:1em;vertical-align:middle;"
       "background:linear-gradient(to right,rgb(0,0,255),white,rgb(255,0,0));border:1px solid #999}</style>"
       "</head><body>\n";
  h << "<h1>" << html_escape(title) << "</h1>\n<p>method: <b>" << html_escape(method)
    << "</b> &nbsp; <span class=\"scale\"></span> negative &ndash; 0 &ndash; positive "
       "(symmetric scale per row: &plusmn; max |R|)</p>\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    const TextHeatmapRow& row = rows[r];
    double scale = 0;
    for (double v : row.relevance) scale = std::max(scale, std::abs(v));
    if (scale == 0) scale = 1;
    h << "<div class=\"row\" id=\"row" << r << "\"><div class=\"meta\">row " << r
      << " &middot; target: <b>" << html_escape(row.target_label) << "</b> &middot; logit f = <b>" << fmt(row.logit)
      << "</b> &middot; &Sigma; R = <b>" << fmt(row.relevance_sum) << "</b></div>\n<div class=\"tokens\">";
    for (size_t i = 0; i < row.tokens.size(); ++i) {
      const double v = i < row.relevance.size() ? row.relevance[i] : 0.0;
      h << "<span class=\"tok\" data-relevance=\"" << fmt(v) << "\" title=\"R = " << fmt(v) << "\" style=\"background:"
        << shade(v / scale) << "\">" << html_escape(row.tokens[i]) << "</span>";
    }
    h << "</div></div>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace mamba_lrp
