// CPU selective scan: entry points called by the torch-facing layer (csrc/ops/cpu).
// Framework-free; the caller supplies a parallel-for (kernels/cpu/parallel.h).
#pragma once
#include <cstdint>
#include "kernels/cpu/parallel.h"
#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

// Inputs float32 or float64 (input_type == weight_type). Writes out, out_y (if set),
// last_state (if set).
void selective_scan_fwd(const SelectiveScanParams& p, ParallelFor parallel_for);

// Writes du, dz (if z), and for the exact rule ddelta, dA, dB, dC, dD, ddelta_bias
// (those whose pointers are set). Needs p.out_y (the pre-gate output) when z is given.
void selective_scan_bwd(const SelectiveScanBwdParams& p, ParallelFor parallel_for);

// The MambaLRP backward (du, dz if z) from the scan's inputs alone: each row's forward runs
// again first (no out_y, no lrp_* factors read), and its decays exp(dt A) are computed once
// for both directions. For a backward that does not keep the forward's outputs. p.du and
// p.dz may be p.u and p.delta (dense, same strides): a row reads those before it writes.
// With p.u_through_silu, p.u holds the conv output c and du comes back at c (SiLU identity).
void selective_scan_bwd_lrp_recompute(const SelectiveScanBwdParams& p, ParallelFor parallel_for);

// The instruction set the kernels run with: "avx512", "avx2" or "baseline". Chosen once
// from the CPU's features; the environment variable MAMBA_LRP_CPU_ISA (same names) may
// force a lower one (used by the tests to cover every path).
const char* selected_isa();

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
