// The Mamba-2 (SSD) scan on the CPU, framework-free; float and double.
//
// Per head h of head_dim P, with a scalar A_h and a scalar Δ per (batch, head, step), and
// B, C of group g(h) = h / (heads / groups):
//   S_t = exp(Δ_t A_h) S_{t-1} + Δ_t x_t ⊗ B_t        (S: P × N, S_{-1} = 0)
//   y_t = S_t C_t + D_h x_t
// Two forms with the same values (to rounding):
//   chunk == 1: per step, one exp per head and step (a rank-1 update and a read-out);
//   chunk >= 2: the chunked SSD form. Within a chunk of Q steps, y = (L ∘ C Bᵀ) diag(Δ) x
//   with L_ij = exp(Σ_{k=j+1..i} Δ_k A) for j <= i, plus the state entering the chunk read
//   out through exp(Σ_{k<=i} Δ_k A) C_i; the state leaving it is passed on. These are matrix
//   products, over all heads of a group at once where they share B and C
//   (ssd_scan_chunked.h).
// transpose = true computes the transpose of the same linear map in x (exp(ΔA), Δ, B, C
// fixed): x is then the output gradient dy, out receives dx, and init_state (optional)
// the gradient of the last state. This is the MambaLRP backward of the scan:
//   R_t = exp(Δ_{t+1} A) R_{t+1} + C_t ⊗ dy_t   (R_{L-1} = dS_last + C_{L-1} ⊗ dy_{L-1})
//   dx_t = Δ_t R_t B_t + D_h dy_t
// It runs as the forward recurrence in reversed time with the roles of B and C swapped.
#pragma once
#include <cstdint>

#include "kernels/cpu/parallel.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {

template <typename T>
struct SsdScanParams {
  int64_t batch = 0, heads = 0, head_dim = 0, seqlen = 0, groups = 1, dstate = 0;
  int64_t chunk = 1;       // 1: the per-step form; >= 2: the chunked form with chunks of this many steps
  bool transpose = false;  // see above
  int64_t threads = 1;     // the threads parallel_for may use (how finely the chunked form splits its work)
  // Every row along seqlen has unit stride.
  const T* x = nullptr;      int64_t x_batch_stride = 0, x_head_stride = 0, x_dim_stride = 0;
  const T* delta = nullptr;  int64_t delta_batch_stride = 0, delta_head_stride = 0;
  const T* A = nullptr;      // (heads), dense
  const T* B = nullptr;      int64_t B_batch_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const T* C = nullptr;      int64_t C_batch_stride = 0, C_group_stride = 0, C_state_stride = 0;
  const T* D = nullptr;      // (heads), dense, optional
  T* out = nullptr;          int64_t out_batch_stride = 0, out_head_stride = 0, out_dim_stride = 0;
  // (batch, heads, head_dim, dstate), dense, optional: the state after the last step
  // (forward), or the gradient arriving at it (transpose).
  T* last_state = nullptr;
  const T* init_state = nullptr;
};

// The largest chunk the kernel takes (its scratch holds a few chunk × chunk matrices per thread).
constexpr int64_t kMaxSsdChunk = 1024;

// The chunked form's tasks are (batch, group, block of the group's heads); heads of a group
// are split into blocks only as far as needed to give every thread about two tasks (each
// block computes the group's C Bᵀ of every chunk again).
template <typename T>
inline int64_t ssd_chunked_head_blocks(const SsdScanParams<T>& p) {
  const int64_t tasks = p.batch * p.groups, per_group = p.heads / p.groups;
  if (tasks >= p.threads) return 1;
  const int64_t wanted = (2 * p.threads + tasks - 1) / tasks;
  return wanted < per_group ? wanted : per_group;
}

// Throws std::invalid_argument on sizes the kernel cannot run (the op layer checks first).
void ssd_scan(const SsdScanParams<float>& p, ParallelFor parallel_for);
void ssd_scan(const SsdScanParams<double>& p, ParallelFor parallel_for);

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
