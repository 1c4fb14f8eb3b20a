// Faithfulness by input flipping (issue 6): token flipping for Mamba language models and
// patch flipping for Vision Mamba, on a generic view of the input as units x features:
// (B, U, F) = embeddings (B, L, H) of the tokens, or the pixels of each patch (B, P, C p p).
//
// For a relevance map R (B, U) and fractions x_k = k / (S - 1), k = 0..S-1, with n the
// number of valid units of a row and m_k = round(x_k n):
//   MoRF (deletion):  the m_k most relevant units replaced by the baseline;
//   LeRF (deletion):  the m_k least relevant units replaced by the baseline;
//   insertion MoRF:   the input holds only the m_k most relevant units;
//   insertion LeRF:   the input holds only the m_k least relevant units.
// "Holds only" depends on `pack_insertions`. Packed (Mamba language models): the inserted
// tokens keep their order and are moved to the end of the row, the positions before them
// are padding (attention_mask 0, as left padding, which a Mamba model ignores), so the
// input is the shorter sequence of the inserted tokens; with none inserted, every position
// is padding. Not packed (Vision Mamba, whose patch grid is fixed): the other units show the
// baseline; then insertion MoRF at x equals LeRF deletion at 1 - x, and ΔA^I equals ΔA^F
// up to the rounding of m_k.
// The score of each modified input is the target's logit (the target stays that of the
// clean input: its label, or the argmax). Areas use the trapezoid rule over x in [0, 1]:
//   ΔA^F = A(LeRF deletion) - A(MoRF deletion)      (large: the relevant units matter)
//   ΔA^I = A(MoRF insertion) - A(LeRF insertion)    (large: the relevant units suffice)
// Ties in R are broken by position (stable sort); padded units are never flipped.
#pragma once
#include <ATen/ATen.h>

#include <functional>

namespace mamba_lrp {
namespace eval {

enum Curve { kMorf = 0, kLerf = 1, kInsertMorf = 2, kInsertLerf = 3 };
const char* curve_name(int curve);  // "morf", "lerf", "insert_morf", "insert_lerf"

// The target logits (n) of a modified input x (n, U, F) whose rows come from data rows
// `rows` (n); valid (n, U) bool: the units that are not padding.
using ScoreFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& valid)>;
// Called after each evaluated chunk with (done, total) model evaluations.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// x (B, U, F) the clean input; baseline (F) or (B, U, F): what a flipped unit becomes;
// valid (B, U) bool or undefined (all valid); relevance (B, U). Returns (4, B, S) scores,
// curves in the order of Curve, evaluated `batch_size` modified inputs per call of score.
at::Tensor flip_curves(const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& valid,
                       const at::Tensor& relevance, int64_t steps, int64_t batch_size, bool pack_insertions,
                       const ScoreFn& score, const ProgressFn& progress = nullptr);

// Trapezoid area over x in [0, 1] of curves (..., S) -> (...).
at::Tensor trapezoid_area(const at::Tensor& curves);

struct MeanSe {
  double mean = 0, se = 0;  // se = sample standard deviation / sqrt(n); 0 for n = 1
};
MeanSe mean_se(const at::Tensor& values);  // (n)

}  // namespace eval
}  // namespace mamba_lrp
