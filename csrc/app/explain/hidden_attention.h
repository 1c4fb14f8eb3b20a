// The hidden attention of Mamba (Ali, Zimerman & Wolf 2024, "The Hidden Attention of Mamba
// Models"): the selective SSM y_t = sum_{s<=t} alpha[t,s] u_s + D u_t per channel d, with
//   alpha_d[t,s] = sum_n C[n,t] exp(A[d,n] (P_d[t] - P_d[s])) delta_d[s] B[n,s],
//   P_d[t] = delta_d[1] + ... + delta_d[t]   (so P_d[t] - P_d[s] = sum_{k=s+1..t} delta_d[k]),
// and the explainers built on it: attention rollout (Abnar & Zuidema 2020) and MambaAttr
// (the gradient-weighted rollout of Chefer, Gur & Wolf 2021, channels in the role of heads).
// For Mamba-2, alpha of each of head h's channels is the head's SSD matrix
// M_ij = (C_i . B_j) exp(sum_{k=j+1..i} Delta_k A_h) Delta_j: its trace holds Delta and A
// repeated per channel and B, C per group (B, G, N, L).
//
// Computation: the exponent is a difference of cumulative sums (log space), evaluated for a
// block of (row, channel) pairs at once as a (pairs, N, L, L) tensor — no loop over t or s.
// Memory bound: one block tensor holds at most `max_elements` (default 2^21 values, 8 MiB
// in float32; about five such temporaries are alive at once) or, when a single (row,
// channel) pair is larger, N L^2 values. Besides the block, a layer needs the channel-
// reduced (B, L, L) result, and the rollout one more (B, L, L): with L = 2048 and N = 16
// one pair is 64M values (256 MiB). Time is O(B I N L^2) per layer: quadratic in the length,
// so meant for L up to a few thousand.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "models/mamba.h"
#include "models/ssm_branch.h"
#include "models/vision_mamba.h"

namespace mamba_lrp {

// The model's standard forward from embeds (B, L, H) (mask (B, L) float 0/1 or undefined),
// returning the head at position pos (B, V) and recording every layer's SsmTrace.
at::Tensor traced_lm_forward(MambaForCausalLM& model, const at::Tensor& embeds, const at::Tensor& mask_f, int64_t pos,
                             std::vector<SsmTrace>* traces);

// Vision Mamba's forward from its token sequence (B, T, D) -> logits (B, classes), recording
// every branch (per layer: forward scan, then the scan of the flipped sequence).
at::Tensor traced_vim_forward(VisionMamba& model, const at::Tensor& tokens, std::vector<SsmTrace>* traces);
// One (B, T, T) attention per Vim layer from the channel-reduced attention of each branch:
// the forward branch plus the backward branch flipped back to sequence order (its matrix is
// upper triangular there), halved when the mixer divides its output by 2.
std::vector<at::Tensor> vim_layer_attention(const VimConfig& config, const std::vector<at::Tensor>& branches);
// The rollout row the classifier reads (B, T): the cls token's, the mean over tokens for mean
// pooling, the last token's for "none"; io::InputError for "max".
at::Tensor vim_readout_row(const VimConfig& config, const at::Tensor& rollout);

enum class ChannelReduce {
  kMeanAbs,           // mean over channels of |alpha_d|                      (attention rollout)
  kMeanGradPositive,  // mean over channels of (dF/dalpha_d * alpha_d)^+      (MambaAttr)
};

// The channel-reduced hidden attention (B, L, L), zero above the diagonal. For
// kMeanGradPositive, grad_y (B, I, L) is dF/dy; dF/dalpha_d[t,s] = grad_y[d,t] u[d,s].
at::Tensor reduced_hidden_attention(const SsmTrace& trace, ChannelReduce how, const at::Tensor& grad_y = {},
                                    int64_t max_elements = int64_t(1) << 21);

// Rollout: M_l = (A_l + I) with rows normalised to sum 1; returns M_last ... M_first (B, L, L).
at::Tensor attention_rollout(const std::vector<at::Tensor>& layers);
// Chefer et al.: R = I; R <- R + A_l R for each layer in order; returns R (B, L, L).
at::Tensor gradient_rollout(const std::vector<at::Tensor>& layers);

}  // namespace mamba_lrp
