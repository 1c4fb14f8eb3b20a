// What the CPU dispatcher hands the per-ISA scan loops besides the shared params: the
// call's CPU-only modes (selective_scan_cpu.h) and the scratch it allocated (the loops only
// see raw pointers). Internal to kernels/cpu.
#pragma once
#include <cstdint>
#include "kernels/cpu/selective_scan_cpu.h"
#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

constexpr int64_t kChunk = 64;  // time steps per chunk: dt, gates and partial sums stay in L1

struct ScanWork {
  int64_t dpad = 0;          // dstate rounded up to a multiple of the 16 lanes
  int64_t parts = 1;         // exact backward: dims of a group are split into this many tasks
  bool decay_only = false;   // every exponent dt A <= 0 (A <= 0, dt through softplus): cheaper exp
  // B and C transposed to (batch, groups, seqlen, dpad), zero in the padded states; one
  // constant in time (time stride 0) to (dim, dpad), each channel's row read at every step
  // and batch.
  const void* Bt = nullptr;
  const void* Ct = nullptr;
  int64_t Bt_step = 0, Ct_step = 0;  // from one step's row of Bt / Ct to the next: dpad, or 0 when constant
  // Exact backward, per task (batch, group, part):
  void* checkpoints = nullptr;  // (tasks, chunks, dpad): state before each chunk
  void* chunk_states = nullptr; // (tasks, kChunk + 1, dpad): states recomputed inside a chunk
  void* dBt = nullptr;          // (tasks, seqlen, dpad), summed over the parts afterwards;
  void* dCt = nullptr;          // a constant one's (batch, dim, dpad), summed over the batch
  // Exact backward, per (batch, dim), summed over the batch afterwards:
  void* dA = nullptr;           // (batch, dim, dpad)
  void* dD = nullptr;           // (batch, dim)
  void* ddelta_bias = nullptr;  // (batch, dim)
  // The call's modes (selective_scan_cpu.h): the forward writes these factors, the MambaLRP
  // backward reads them (none when lrp.dt is null); the recompute backward takes u through SiLU.
  LrpFactors lrp;
  bool u_through_silu = false;
};

#define MAMBA_LRP_DECLARE_ISA(isa)                                                              \
  namespace isa {                                                                               \
  void fwd_range(const SelectiveScanParams& p, const ScanWork& w, int64_t begin, int64_t end);  \
  void bwd_lrp_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin,         \
                     int64_t end);                                                              \
  void bwd_lrp_recompute_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin, \
                               int64_t end);                                                    \
  void bwd_exact_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin,       \
                       int64_t end);                                                            \
  }

MAMBA_LRP_DECLARE_ISA(baseline)
MAMBA_LRP_DECLARE_ISA(avx2)
MAMBA_LRP_DECLARE_ISA(avx512)
#undef MAMBA_LRP_DECLARE_ISA

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
