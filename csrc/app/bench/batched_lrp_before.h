// The batched MambaLRP before the chunked, channel-major backward (bench only).
#pragma once
#include "csrc/app/generate/batched_lrp.h"

namespace mamba_lrp {

// mambalrp_batched as of commit 9b4466f (Mamba-1 models only): the same values.
BatchedRelevance mambalrp_batched_before(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask,
                                         const at::Tensor& positions, const at::Tensor& targets);

}  // namespace mamba_lrp
