#include "csrc/app/eval/flipping.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace mamba_lrp {
namespace eval {

const char* curve_name(int curve) {
  static const char* names[] = {"morf", "lerf", "insert_morf", "insert_lerf"};
  return names[curve];
}

namespace {

// rank[b, u] = the place of unit u when the valid units of row b are sorted by relevance
// (descending: 0 = most relevant); invalid units get places >= n_valid.
at::Tensor ranks(const at::Tensor& rel, const at::Tensor& valid, bool descending) {
  const double fill = descending ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  const at::Tensor r = rel.to(at::kDouble).masked_fill(valid.logical_not(), fill);                  // (B, U)
  const at::Tensor order = std::get<1>(r.sort(/*stable=*/true, /*dim=*/1, /*descending=*/descending));  // (B, U)
  at::Tensor rank = at::empty_like(order);
  rank.scatter_(1, order, at::arange(rel.size(1), order.options()).unsqueeze(0).expand_as(order));
  return rank;
}

}  // namespace

at::Tensor flip_curves(const at::Tensor& x, const at::Tensor& baseline_in, const at::Tensor& valid_in,
                       const at::Tensor& relevance, int64_t steps, int64_t batch_size, bool pack_insertions,
                       const ScoreFn& score, const ProgressFn& progress) {
  TORCH_CHECK(x.dim() == 3, "flip_curves: x must have shape (B, U, F)");
  TORCH_CHECK(relevance.sizes() == x.sizes().slice(0, 2), "flip_curves: relevance must have shape (B, U)");
  TORCH_CHECK(steps >= 2, "flip_curves: steps must be at least 2");
  TORCH_CHECK(batch_size >= 1, "flip_curves: batch_size must be at least 1");
  torch::NoGradGuard no_grad;
  const int64_t B = x.size(0), U = x.size(1);
  const at::Tensor valid = valid_in.defined() ? valid_in.to(at::kBool) : at::ones({B, U}, at::kBool);
  const at::Tensor baseline = baseline_in.dim() == 1 ? baseline_in.view({1, 1, -1}).expand_as(x) : baseline_in;
  const at::Tensor n_valid = valid.sum(1).to(at::kDouble);                                   // (B)
  const at::Tensor desc = ranks(relevance, valid, true), asc = ranks(relevance, valid, false);  // (B, U)
  // m[b, k] = round(x_k n_b): how many units are taken at step k.
  const at::Tensor xs = at::arange(steps, at::kDouble) / static_cast<double>(steps - 1);   // (S)
  const at::Tensor m = at::round(n_valid.unsqueeze(1) * xs.unsqueeze(0)).to(at::kLong);    // (B, S)

  // Flattened evaluations: index i -> (curve c, row b, step k), i = (c B + b) S + k.
  const int64_t total = 4 * B * steps;
  at::Tensor scores = at::empty({total}, at::kDouble);
  for (int64_t i0 = 0; i0 < total; i0 += batch_size) {
    const int64_t n = std::min(batch_size, total - i0);
    const at::Tensor idx = at::arange(i0, i0 + n, at::kLong);
    const at::Tensor c = idx.div(B * steps, "floor"), b = idx.div(steps, "floor").remainder(B), k = idx.remainder(steps);
    const at::Tensor mk = m.index({b, k}).unsqueeze(1);                                    // (n, 1)
    const at::Tensor rd = desc.index_select(0, b), ra = asc.index_select(0, b);              // (n, U)
    const at::Tensor cc = c.unsqueeze(1);
    // Which units show the baseline.
    at::Tensor flipped = at::where(cc == kMorf, rd < mk,
                         at::where(cc == kLerf, ra < mk,
                         at::where(cc == kInsertMorf, rd >= mk, ra >= mk)));                 // (n, U)
    const at::Tensor vb = valid.index_select(0, b);                                          // (n, U)
    flipped = flipped & vb;
    const at::Tensor bx = b.to(x.device());                                                  // rows, on x's device
    const at::Tensor xb = x.index_select(0, bx), bb = baseline.index_select(0, bx);         // (n, U, F)
    at::Tensor mod = at::where(flipped.unsqueeze(2).to(x.device()), bb, xb);
    at::Tensor mod_valid = vb;
    if (pack_insertions) {
      // Insertion rows: the kept units, in order, moved to the end; padding before them.
      const at::Tensor ins = (c >= kInsertMorf).unsqueeze(1);                                // (n, 1)
      const at::Tensor kept = vb & flipped.logical_not();                                    // (n, U)
      const at::Tensor pos = at::arange(U, at::kLong).unsqueeze(0).expand_as(kept);
      const at::Tensor order = std::get<1>(at::where(kept, pos, -1).sort(true, 1, false));   // (n, U) others first
      const at::Tensor count = kept.sum(1, true);                                            // (n, 1)
      const at::Tensor packed_valid = pos >= (U - count);                                    // (n, U)
      const at::Tensor gathered = xb.gather(1, order.unsqueeze(2).expand_as(xb).to(x.device()));
      const at::Tensor packed = at::where(packed_valid.unsqueeze(2).to(x.device()), gathered, bb);
      mod = at::where(ins.unsqueeze(2).to(x.device()), packed, mod);
      mod_valid = at::where(ins, packed_valid, vb);
    }
    scores.narrow(0, i0, n).copy_(score(mod, bx, mod_valid.to(x.device())).to(at::kDouble).cpu());
    if (progress) progress(i0 + n, total);
  }
  return scores.view({4, B, steps});
}

at::Tensor trapezoid_area(const at::Tensor& curves) {
  const int64_t S = curves.size(-1);
  const at::Tensor y = curves.to(at::kDouble);
  return (y.narrow(-1, 0, S - 1) + y.narrow(-1, 1, S - 1)).sum(-1) * (0.5 / (S - 1));
}

MeanSe mean_se(const at::Tensor& values) {
  const at::Tensor v = values.to(at::kDouble).flatten();
  MeanSe r;
  const int64_t n = v.numel();
  if (n == 0) return r;
  r.mean = v.mean().item<double>();
  r.se = n > 1 ? v.std(/*unbiased=*/true).item<double>() / std::sqrt(static_cast<double>(n)) : 0.0;
  return r;
}

}  // namespace eval
}  // namespace mamba_lrp
