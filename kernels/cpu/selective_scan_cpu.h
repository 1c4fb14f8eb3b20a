// CPU selective scan: entry points called by the torch-facing layer (csrc/ops/cpu).
// Framework-free; the caller supplies a parallel-for (kernels/cpu/parallel.h).
// Besides the params every backend shares (kernels/selective_scan_params.h), the CPU has two
// modes of its own, passed alongside them: the MambaLRP factors (LrpFactors) and u through SiLU.
#pragma once
#include <cstdint>
#include "kernels/cpu/parallel.h"
#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

// What the MambaLRP backward needs, kept by a forward that records for it. The forward
// computes them anyway; all three are (batch, dim, seqlen) with the strides here:
//   dt       = softplus(delta + delta_bias) (or without softplus), the dt the scan used
//   gy_scale = silu(z) / 2      (with z)   the gate half rule's factor for y
//   dz_scale = y sigmoid(z) / 2 (with z)   and for z, with the SiLU identity rule
// A MambaLRP backward given them reads these instead of delta, delta_bias, z and out_y, and
// skips the softplus and the gate's exponentials. No dt (the default): no factors.
struct LrpFactors {
  void* dt = nullptr;
  void* gy_scale = nullptr;
  void* dz_scale = nullptr;
  int64_t batch_stride = 0, dim_stride = 0;
};

// Inputs float32 or float64 (input_type == weight_type), or float16 / bfloat16 with float32
// weights: computed in float32 (each row converted on the way in and out), out and out_y in
// the input dtype, last_state float32; no factors kept then. Writes out, out_y (if set),
// last_state (if set), and the factors in `keep` (those set).
void selective_scan_fwd(const SelectiveScanParams& p, ParallelFor parallel_for, const LrpFactors& keep = {});

// Inputs as for the forward (float16 / bfloat16: converted row by row; grad_last_state float32;
// du, dz, ddelta, dB, dC in the input dtype, dA, dD, ddelta_bias float32; no factors then).
// Writes du, dz (if z), and for the exact rule ddelta, dA, dB, dC, dD, ddelta_bias
// (those whose pointers are set). Needs p.out_y (the pre-gate output) when z is given.
// With `factors` (MambaLRP rule only; gy_scale and dz_scale with z) it reads those instead;
// p.z and p.out_y still say whether there is a gate, but are not read (csrc passes the factors).
void selective_scan_bwd(const SelectiveScanBwdParams& p, ParallelFor parallel_for, const LrpFactors& factors = {});

// The MambaLRP backward (du, dz if z) from the scan's inputs alone (float32 or float64): each row's forward runs
// again first (no out_y, no factors read), and its decays exp(dt A) are computed once
// for both directions. For a backward that does not keep the forward's outputs. p.du and
// p.dz may be p.u and p.delta (dense, same strides): a row reads those before it writes.
// With u_through_silu, p.u holds the conv output c of u = silu(c), applied here, and du
// comes back as the gradient at c under the SiLU identity rule, du * sigmoid(c).
void selective_scan_bwd_lrp_recompute(const SelectiveScanBwdParams& p, ParallelFor parallel_for,
                                      bool u_through_silu = false);

// The instruction set the kernels run with: "avx512", "avx2" or "baseline". Chosen once
// from the CPU's features; the environment variable MAMBA_LRP_CPU_ISA (same names) may
// force a lower one (used by the tests to cover every path).
const char* selected_isa();

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
