// One selective-SSM branch of a Mamba mixer (conv1d, SiLU, x_proj, dt_proj, the selective
// scan, the gate), shared by the language models and Vision Mamba's bidirectional mixer.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include "models/propagation_context.h"

namespace mamba_lrp {

// The weights of one branch (Vim's bidirectional mixer has two: forward and backward).
struct SsmBranch {
  at::Tensor conv_weight;                 // (I, 1, K) depthwise
  c10::optional<at::Tensor> conv_bias;    // (I)
  at::Tensor x_proj_weight;               // (R + 2N, I)
  at::Tensor dt_proj_weight;              // (I, R)
  c10::optional<at::Tensor> dt_proj_bias; // (I)
  at::Tensor A_log;                       // (I, N)
  at::Tensor D;                           // (I)
};

// What one branch's selective scan saw (recorded when PropagationContext::trace is set), in
// the branch's own sequence order (Vim's backward branch: the flipped sequence).
struct SsmTrace {
  at::Tensor u;      // (B, I, L) the scan input (after conv1d and SiLU)
  at::Tensor delta;  // (B, I, L) after softplus
  at::Tensor A;      // (I, N)
  at::Tensor B, C;   // (B, N, L) contiguous
  at::Tensor y;      // (B, I, L) the scan output (D u included), before the gate; in the graph
};

// One SSM branch with the gate: causal depthwise conv1d, SiLU, x_proj -> (dt, B, C),
// dt_proj, the selective scan with softplus(dt), D and the gate y * silu(z), each with the
// rules of ctx. x, z: (B, I, L); mask (B, L) 0/1 or undefined (zeroes x before and after
// the conv, as Hugging Face does for left padding). Returns the gated y (B, I, L).
//
// With ctx.recompute, every MambaLRP rule on and LRP-0 on conv1d (the default explanation),
// the branch is one autograd node that keeps only x and z (and x_proj's (B, R + 2N, L)
// output) for the backward and recomputes the rest there: 2 of the 7 (B, I, L) tensors the
// composition of ops keeps, for a backward that takes longer, as it runs the conv, dt_proj
// and the scan's forward again. Same values.
at::Tensor ssm_branch_forward(const at::Tensor& x, const at::Tensor& z, const at::Tensor& mask, const SsmBranch& w,
                              const PropagationContext& ctx);

// ---- Generation: the branch as a recurrence, O(1) per token -------------------------------

// What one branch carries from step to step when it is run token by token (as Mamba is for
// generation): the conv's window and the SSM state. Mamba-2's mixer (models/mamba2.h) keeps
// the same two: its conv's input is xBC (I + 2GN channels), its state P x N per head.
struct SsmState {
  at::Tensor conv_window;  // (B, I, K-1) the branch input x at the last K-1 steps (zeros before the start)
  at::Tensor ssm;          // (B, I, N) the state h after the last step
};

// The plain forward of ssm_branch_forward (no rules, nothing recorded) that also returns, in
// `state`, what a step needs to continue after the last position. x, z: (B, I, L); mask as
// ssm_branch_forward (masked steps leave the state untouched). Returns the gated y (B, I, L).
at::Tensor ssm_branch_prefill(const at::Tensor& x, const at::Tensor& z, const at::Tensor& mask, const SsmBranch& w,
                              SsmState& state);

// One step of the recurrence: x, z (B, I) of the new token -> the gated y (B, I); `state`
// advances by one token. The same arithmetic as the scan kernel's (softplus as
// max(d, 0) + log1p(exp(-|d|))), so a float64 step equals the float64 forward to rounding.
at::Tensor ssm_branch_step(const at::Tensor& x, const at::Tensor& z, const SsmBranch& w, SsmState& state);

// Whether ssm_branch_forward takes the recompute path (one autograd node) for this context.
bool uses_recompute_branch(const PropagationContext& ctx);

}  // namespace mamba_lrp
