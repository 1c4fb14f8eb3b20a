// Parameters of one selective-scan call, shared by the CPU and CUDA kernels: only what
// every backend reads. A mode only one backend has goes alongside these params, in that
// backend's own struct (the CPU's: LrpFactors and u_through_silu, kernels/cpu/selective_scan_cpu.h).
// Framework-free: raw pointers and 64-bit element strides, no ATen types.
//
// Shapes (mamba_ssm's layout):
//   u, delta, z, out, out_y : (batch, dim, seqlen)
//   A                       : (dim, dstate)
//   B, C                    : (batch, groups, dstate, seqlen)   [groups = 1 for (batch, dstate, seqlen)]
//   D, delta_bias           : (dim)
//   last_state              : (batch, dim, dstate)
// The last dimension of every (…, seqlen) tensor has stride 1; every other stride is
// given here, so a kernel never assumes a dense layout beyond that. The one exception:
// B and C have a time stride, 1 (time-varying) or 0: constant in time and over the batch,
// mamba_ssm's (dim, dstate) form, one row per channel: the group stride is then the stride
// between channels, the batch stride is not read, and n_groups is the other one's (any
// count when both are constant). Time stride 0 is for the CPU kernels only: csrc gives the
// CUDA kernels a constant B/C copied along seqlen, with dim groups.
#pragma once
#include <cstdint>

namespace mamba_lrp {
namespace kernels {

// The largest state size the kernels support (CPU and CUDA alike).
constexpr int64_t kMaxDState = 256;

enum class ScanDType { kFloat32, kFloat64, kFloat16, kBFloat16 };

struct SelectiveScanParams {
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0, n_groups = 1;
  int64_t dim_per_group() const { return dim / n_groups; }

  ScanDType input_type = ScanDType::kFloat32;   // u, delta, z, B, C, out
  ScanDType weight_type = ScanDType::kFloat32;  // A, D, delta_bias
  bool delta_softplus = false;

  const void* u = nullptr;       int64_t u_batch_stride = 0, u_dim_stride = 0;
  const void* delta = nullptr;   int64_t delta_batch_stride = 0, delta_dim_stride = 0;
  const void* z = nullptr;       int64_t z_batch_stride = 0, z_dim_stride = 0;        // optional
  const void* A = nullptr;       int64_t A_dim_stride = 0, A_dstate_stride = 0;
  const void* B = nullptr;       int64_t B_batch_stride = 0, B_group_stride = 0, B_dstate_stride = 0;
  const void* C = nullptr;       int64_t C_batch_stride = 0, C_group_stride = 0, C_dstate_stride = 0;
  int64_t B_time_stride = 1, C_time_stride = 1;  // 1, or 0: constant (batch stride unread)
  const void* D = nullptr;                                                            // optional
  const void* delta_bias = nullptr;                                                   // optional

  void* out = nullptr;           int64_t out_batch_stride = 0, out_dim_stride = 0;    // gated output
  void* out_y = nullptr;         int64_t out_y_batch_stride = 0, out_y_dim_stride = 0; // pre-gate y (only with z; optional)
  void* last_state = nullptr;    // (batch, dim, dstate) dense, float for fp16/bf16/fp32 inputs; optional
};

// Which backward a call computes.
enum class ScanRule {
  kExact,     // true gradients of every differentiable input
  kMambaLRP,  // y linear in u (exp(dt A), dt B, C constant); gate half rule with SiLU identity
};

struct SelectiveScanBwdParams : SelectiveScanParams {
  ScanRule rule = ScanRule::kExact;

  const void* grad_out = nullptr;  int64_t grad_out_batch_stride = 0, grad_out_dim_stride = 0;
  const void* grad_last_state = nullptr;  // optional, (batch, dim, dstate) dense
  // Pre-gate y saved by the forward; needed for dz when z is given.
  // (out_y in the base struct is reused for it, read-only here.)

  void* du = nullptr;       int64_t du_batch_stride = 0, du_dim_stride = 0;
  void* dz = nullptr;       int64_t dz_batch_stride = 0, dz_dim_stride = 0;
  // Exact rule only:
  void* ddelta = nullptr;   int64_t ddelta_batch_stride = 0, ddelta_dim_stride = 0;
  void* dA = nullptr;       // (dim, dstate) dense
  void* dB = nullptr;       // (batch, groups, dstate, seqlen) dense; (dim, dstate) when constant
  void* dC = nullptr;       // (summed over batch and time) — see B_time_stride
  void* dD = nullptr;       // (dim), optional
  void* ddelta_bias = nullptr;  // (dim), optional
};

}  // namespace kernels
}  // namespace mamba_lrp
