// CUDA selective scan: the host-side launcher API called by the torch-facing layer
// (csrc/ops/cuda). Framework-free: the params struct of kernels/selective_scan_params.h, raw
// device pointers and a stream; no ATen types.
//
// Dtypes: u, delta, z, B, C (and out, out_y, grad_out, du, dz, ddelta, dB, dC) share one
// input dtype, float32, float16 or bfloat16; A, D, delta_bias (and dA, dD, ddelta_bias)
// are float32. The state and every accumulation are float32.
//
// last_state (forward) and grad_last_state (backward) are float32 (batch, dim, dstate)
// dense, whatever the input dtype: the state is kept in float32 and rounding it to
// float16/bfloat16 would throw away precision the caller may carry on with (mamba_ssm
// returns its last state in float32 too). For float32 inputs this is u's dtype, as on CPU.
#pragma once
#include <cstddef>

#include <cuda_runtime_api.h>

#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cuda {

// Every launcher throws std::invalid_argument for parameters the kernels do not support
// (dtypes, dstate, groups, sizes past the grid limit) before launching anything, and
// returns the first CUDA error of its launches (cudaSuccess when all were queued).

// Writes out, out_y (if set), last_state (if set, float32).
cudaError_t selective_scan_fwd(const SelectiveScanParams& p, cudaStream_t stream);

// Scratch the backward needs, in bytes (0 for the MambaLRP rule). The caller allocates it
// on the inputs' device (any alignment of 256 bytes or more) and passes it below.
size_t selective_scan_bwd_workspace_bytes(const SelectiveScanBwdParams& p);

// Writes du, dz (if z), and for the exact rule ddelta, dA, dB, dC, dD, ddelta_bias (those
// whose pointers are set; dA, dB, dC are dense and required for the exact rule). Needs
// p.out_y (the forward's pre-gate output) when z is given.
//   MambaLRP: a reverse linear scan per (batch, dim) row; no forward states, no atomics,
//             deterministic.
//   exact:    the states at every chunk start are recomputed into the workspace, then
//             each chunk's states are recomputed in shared memory and walked in reverse;
//             dA, dB, dC, dD, ddelta_bias are summed with atomics (not bit-reproducible).
cudaError_t selective_scan_bwd(const SelectiveScanBwdParams& p, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace kernels
}  // namespace mamba_lrp
