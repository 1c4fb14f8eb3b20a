// MambaLRP for several outputs of one sequence at once: one forward, then one backward that
// carries one cotangent per output through what that forward recorded.
//
// The MambaLRP backward is linear in its cotangent (every rule holds its forward factors
// constant), so G outputs of the same sequence need the forward once and the backward with
// a batch of G cotangents, not G copies of the sequence. libtorch's autograd cannot carry
// that batch through a graph recorded for one row (it sums a gradient back to the shape the
// forward saw; is_grads_batched is a Python-only vmap), so this walks the backward by hand:
// the rules of DESIGN.md §1 with LRP-0 on every linear layer (the `mambalrp` method with the
// default composite), each step applied to (G, ...) cotangents with the (1, ...) factors of
// the one forward, for Mamba-1 and Mamba-2 blocks. Output k's cotangent is zero after its
// position p_k, so the cotangents go through the layers in chunks of consecutive outputs,
// each over positions 0..max p_k of its chunk only. Tested against explain() of each
// output alone.
#pragma once
#include <ATen/ATen.h>

#include "models/mamba.h"

namespace mamba_lrp {

struct BatchedRelevance {
  at::Tensor relevance;  // (G, T): sum over the hidden dim of e * R-gradient; 0 at masked positions
  at::Tensor logits;     // (G): the explained logits
};

// ids (1, T) int64 in the vocabulary; mask (1, T) of 0/1 or undefined; output k is the logit
// of targets[k] at positions[k] (both (G) int64, checked by the caller). The model's weights
// are read as they are (a zero-bias explanation zeroes them first).
BatchedRelevance mambalrp_batched(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask,
                                  const at::Tensor& positions, const at::Tensor& targets);

}  // namespace mamba_lrp
