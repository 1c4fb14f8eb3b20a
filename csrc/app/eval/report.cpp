#include "csrc/app/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "csrc/app/eval/flipping.h"

namespace mamba_lrp {
namespace eval {

namespace {

std::string fmt(double v, const char* f = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::vector<double> to_vec(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous().cpu();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

nlohmann::json ms_json(const MeanSe& m) { return {{"mean", m.mean}, {"se", m.se}}; }

struct Summary {
  MeanSe area[4], dAF, dAI;
};

Summary summarize(const MethodCurves& m) {
  Summary s;
  const at::Tensor areas = trapezoid_area(m.curves);  // (4, B)
  for (int c = 0; c < 4; ++c) s.area[c] = mean_se(areas[c]);
  s.dAF = mean_se(areas[kLerf] - areas[kMorf]);
  s.dAI = mean_se(areas[kInsertMorf] - areas[kInsertLerf]);
  return s;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

const char* kColors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"};

}  // namespace

nlohmann::json report_json(const Report& r) {
  nlohmann::json j = {{"model", r.model},   {"data", r.data},   {"model_type", r.model_type},
                      {"unit", r.unit},     {"baseline", r.baseline}, {"score", r.score},
                      {"rows", r.rows},     {"steps", r.steps}, {"methods", nlohmann::json::object()}};
  std::vector<double> xs;
  for (int64_t k = 0; k < r.steps; ++k) xs.push_back(static_cast<double>(k) / (r.steps - 1));
  j["fractions"] = xs;
  for (const auto& m : r.methods) {
    const Summary s = summarize(m);
    nlohmann::json mj;
    for (int c = 0; c < 4; ++c) {
      const at::Tensor cur = m.curves[c];  // (B, S)
      const at::Tensor se = cur.size(0) > 1 ? cur.std(0, true) / std::sqrt(static_cast<double>(cur.size(0)))
                                            : at::zeros({cur.size(1)}, cur.options());
      mj["curves"][curve_name(c)] = {{"mean", to_vec(cur.mean(0))}, {"se", to_vec(se)}};
      mj["area"][curve_name(c)] = ms_json(s.area[c]);
    }
    mj["dA_F"] = ms_json(s.dAF);
    mj["dA_I"] = ms_json(s.dAI);
    j["methods"][m.method] = mj;
  }
  for (const auto& c : r.conservation)
    j["conservation"][c.method] = {{"relevance_sum", c.relevance_sum}, {"logit", c.logit}, {"zero_bias", true}};
  return j;
}

std::string report_markdown(const Report& r) {
  std::ostringstream o;
  o << "Faithfulness of " << r.model << " on " << r.data << " (" << r.rows << " rows, " << r.unit
    << " flipping, " << r.steps << " steps, baseline " << r.baseline << ", score: " << r.score << ")\n\n";
  o << "| method | ΔA^F ↑ | ΔA^I ↑ | A_MoRF | A_LeRF | A_ins,MoRF | A_ins,LeRF |\n";
  o << "|---|---|---|---|---|---|---|\n";
  auto cell = [](const MeanSe& m) { return fmt(m.mean) + " ± " + fmt(m.se, "%.2g"); };
  for (const auto& m : r.methods) {
    const Summary s = summarize(m);
    o << "| " << m.method << " | " << cell(s.dAF) << " | " << cell(s.dAI) << " | " << cell(s.area[kMorf]) << " | "
      << cell(s.area[kLerf]) << " | " << cell(s.area[kInsertMorf]) << " | " << cell(s.area[kInsertLerf]) << " |\n";
  }
  o << "\nMean ± standard error over rows. Each curve is the " << r.score << " of the clean input's target"
    << " after a fraction x of the " << r.unit << (r.unit == "patch" ? "es" : "s") << " (x = 0, 1/(S-1), ..., 1) is replaced by the baseline:"
    << " MoRF/LeRF delete the most/least relevant first; the insertion curves start from the empty input and"
    << " insert the most (ins,MoRF) or least (ins,LeRF) relevant first"
    << (r.unit == "token" ? " (the inserted tokens alone, in their order, left-padded)"
                          : " (the other patches show the baseline, so ΔA^I equals ΔA^F up to rounding)")
    << ". A = trapezoid area over x in [0, 1];"
    << " ΔA^F = A_LeRF − A_MoRF, ΔA^I = A_ins,MoRF − A_ins,LeRF.\n";
  return o.str();
}

std::string report_svg(const Report& r) {
  const int panel_w = 300, panel_h = 220, margin = 45;
  const bool scatter = !r.conservation.empty();
  const int panels = 4 + (scatter ? 1 : 0);
  const int width = panels * (panel_w + margin) + margin, legend_h = 18 * static_cast<int>(r.methods.size()) + 20;
  const int height = panel_h + 2 * margin + legend_h;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  // Common y range over every curve mean.
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& m : r.methods) {
    const at::Tensor mean = m.curves.mean(1);
    lo = std::min(lo, mean.min().item<double>());
    hi = std::max(hi, mean.max().item<double>());
  }
  if (!(hi > lo)) {
    lo -= 1;
    hi += 1;
  }
  const char* titles[] = {"deletion, most relevant first", "deletion, least relevant first",
                          "insertion, most relevant first", "insertion, least relevant first"};
  auto axes = [&](int x0, const std::string& title, const std::string& xl, const std::string& yl, double ylo,
                  double yhi, double xlo, double xhi) {
    o << "<rect x=\"" << x0 << "\" y=\"" << margin << "\" width=\"" << panel_w << "\" height=\"" << panel_h
      << "\" fill=\"none\" stroke=\"#444\"/>\n";
    o << "<text x=\"" << x0 + panel_w / 2 << "\" y=\"" << margin - 8 << "\" text-anchor=\"middle\">" << esc(title)
      << "</text>\n";
    o << "<text x=\"" << x0 + panel_w / 2 << "\" y=\"" << margin + panel_h + 28 << "\" text-anchor=\"middle\">"
      << esc(xl) << "</text>\n";
    o << "<text x=\"" << x0 - 32 << "\" y=\"" << margin + panel_h / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 "
      << x0 - 32 << " " << margin + panel_h / 2 << ")\">" << esc(yl) << "</text>\n";
    o << "<text x=\"" << x0 - 3 << "\" y=\"" << margin + panel_h << "\" text-anchor=\"end\">" << fmt(ylo, "%.3g") << "</text>\n";
    o << "<text x=\"" << x0 - 3 << "\" y=\"" << margin + 10 << "\" text-anchor=\"end\">" << fmt(yhi, "%.3g") << "</text>\n";
    o << "<text x=\"" << x0 << "\" y=\"" << margin + panel_h + 14 << "\">" << fmt(xlo, "%.3g") << "</text>\n";
    o << "<text x=\"" << x0 + panel_w << "\" y=\"" << margin + panel_h + 14 << "\" text-anchor=\"end\">"
      << fmt(xhi, "%.3g") << "</text>\n";
  };
  for (int c = 0; c < 4; ++c) {
    const int x0 = margin + c * (panel_w + margin);
    axes(x0, titles[c], "fraction flipped", r.score, lo, hi, 0, 1);
    for (size_t mi = 0; mi < r.methods.size(); ++mi) {
      const std::vector<double> y = to_vec(r.methods[mi].curves[c].mean(0));
      o << "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"" << kColors[mi % 12] << "\" points=\"";
      for (size_t k = 0; k < y.size(); ++k) {
        const double px = x0 + panel_w * (static_cast<double>(k) / (y.size() - 1));
        const double py = margin + panel_h * (1 - (y[k] - lo) / (hi - lo));
        o << fmt(px, "%.1f") << "," << fmt(py, "%.1f") << " ";
      }
      o << "\"/>\n";
    }
  }
  if (scatter) {
    const int x0 = margin + 4 * (panel_w + margin);
    double a = INFINITY, b = -INFINITY;
    for (const auto& c : r.conservation)
      for (size_t i = 0; i < c.logit.size(); ++i)
        a = std::min({a, c.logit[i], c.relevance_sum[i]}), b = std::max({b, c.logit[i], c.relevance_sum[i]});
    if (!(b > a)) {
      a -= 1;
      b += 1;
    }
    axes(x0, "conservation (zero bias)", "output f", "sum of relevance", a, b, a, b);
    auto px = [&](double v) { return x0 + panel_w * (v - a) / (b - a); };
    auto py = [&](double v) { return margin + panel_h * (1 - (v - a) / (b - a)); };
    o << "<line x1=\"" << px(a) << "\" y1=\"" << py(a) << "\" x2=\"" << px(b) << "\" y2=\"" << py(b)
      << "\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n";
    for (size_t ci = 0; ci < r.conservation.size(); ++ci) {
      const auto& c = r.conservation[ci];
      size_t mi = 0;
      while (mi < r.methods.size() && r.methods[mi].method != c.method) ++mi;
      for (size_t i = 0; i < c.logit.size(); ++i)
        o << "<circle cx=\"" << fmt(px(c.logit[i]), "%.1f") << "\" cy=\"" << fmt(py(c.relevance_sum[i]), "%.1f")
          << "\" r=\"2.5\" fill=\"" << kColors[mi % 12] << "\" fill-opacity=\"0.7\"/>\n";
    }
  }
  for (size_t mi = 0; mi < r.methods.size(); ++mi) {
    const int y = margin + panel_h + 45 + 18 * static_cast<int>(mi);
    o << "<rect x=\"" << margin << "\" y=\"" << y - 9 << "\" width=\"14\" height=\"4\" fill=\"" << kColors[mi % 12]
      << "\"/><text x=\"" << margin + 20 << "\" y=\"" << y - 3 << "\">" << esc(r.methods[mi].method) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace eval
}  // namespace mamba_lrp
