// What the forward and backward scan loops share (selective_scan_fwd_loops.h,
// selective_scan_bwd_loops.h). Those are included by selective_scan_{isa}.cpp with
// MAMBA_LRP_CPU_ISA defined; everything here lives in that ISA's namespace.
//
// Per (batch, dim) row the sequence is walked in chunks of kChunk steps. Inside a chunk
// the states are processed 16 at a time (one Vec), with the 16 states held in registers
// across the chunk's steps:
//   forward   h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t ;  y_t = C_t . h_t + D u_t
//   MambaLRP  g_t = exp(dt_{t+1} A) g_{t+1} + gy_t C_t ;  du_t = dt_t B_t . g_t + D gy_t
//   exact     the same reverse scan, plus dt, A, B, C, D gradients from states that are
//             recomputed per chunk from a checkpoint of the state at the chunk's start.
// A forward asked for the MambaLRP factors (ScanWork::lrp) also writes dt, silu(z)/2 and
// y sigmoid(z)/2; the MambaLRP backward given them reads those instead of computing them again.
// The *_range entry points pick a row's template variant (float or double, decay_only)
// once per call with bool_switch (static_switch.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#include "kernels/cpu/selective_scan_work.h"
#include "kernels/cpu/simd_math.h"
#include "kernels/cpu/static_switch.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace {

// The element type of a call: float64 inputs (kF64) or float32 (selective_scan_dispatch.cpp
// accepts nothing else on the CPU).
template <bool kF64>
using ScanFloat = std::conditional_t<kF64, double, float>;

inline bool is_f64(const SelectiveScanParams& p) { return p.input_type == ScanDType::kFloat64; }

template <typename T>
struct RowPtrs {
  const T* u;
  const T* delta;
  const T* z;  // may be null
  T D;
  T bias;
  // ScanWork::lrp: written by the forward, read by the MambaLRP backward (may be null).
  T* lrp_dt;
  T* lrp_gy_scale;
  T* lrp_dz_scale;
};

template <typename T>
RowPtrs<T> row_ptrs(const SelectiveScanParams& p, const ScanWork& w, int64_t b, int64_t d) {
  RowPtrs<T> r;
  r.u = static_cast<const T*>(p.u) + b * p.u_batch_stride + d * p.u_dim_stride;
  r.delta = static_cast<const T*>(p.delta) + b * p.delta_batch_stride + d * p.delta_dim_stride;
  r.z = p.z ? static_cast<const T*>(p.z) + b * p.z_batch_stride + d * p.z_dim_stride : nullptr;
  r.D = p.D ? static_cast<const T*>(p.D)[d] : T(0);
  r.bias = p.delta_bias ? static_cast<const T*>(p.delta_bias)[d] : T(0);
  const int64_t lrp_at = b * w.lrp.batch_stride + d * w.lrp.dim_stride;
  r.lrp_dt = w.lrp.dt ? static_cast<T*>(w.lrp.dt) + lrp_at : nullptr;
  r.lrp_gy_scale = w.lrp.gy_scale ? static_cast<T*>(w.lrp.gy_scale) + lrp_at : nullptr;
  r.lrp_dz_scale = w.lrp.dz_scale ? static_cast<T*>(w.lrp.dz_scale) + lrp_at : nullptr;
  return r;
}

// exp(dt A) of a block of states; with ScanWork::decay_only every exponent is <= 0.
template <bool kDecayOnly, typename V>
inline V exp_dtA(V x) {
  if constexpr (kDecayOnly) return vexp_nonpositive(x);
  else return vexp(x);
}

// A[d, :] zero-padded to dpad lanes (padded states: exp(0) = 1, B = C = 0, so they stay 0).
template <typename T>
void load_A_row(const SelectiveScanParams& p, int64_t d, int64_t dpad, T* a) {
  const T* A = static_cast<const T*>(p.A) + d * p.A_dim_stride;
  for (int64_t n = 0; n < dpad; ++n) a[n] = n < p.dstate ? A[n * p.A_dstate_stride] : T(0);
}

// Lanes [0, count) from src and zeros after them (a whole vector when count >= kLanes),
// and the matching partial store: the chunk loops work a vector at a time and only touch
// the steps that exist.
template <typename T>
inline Vec<T> load_upto(const T* src, int64_t count) {
  if (count >= kLanes<T>) return load<T>(src);
  alignas(64) T tmp[kLanes<T>] = {};
  std::copy(src, src + count, tmp);
  return load<T>(tmp);
}
template <typename T>
inline void store_upto(T* dst, Vec<T> v, int64_t count) {
  if (count >= kLanes<T>) return store(dst, v);
  alignas(64) T tmp[kLanes<T>];
  store(tmp, v);
  std::copy(tmp, tmp + count, dst);
}

// Steps [t0, t0+n) of one row of a (batch, dim, seqlen) input, asked into the cache while
// the current row is scanned: every row starts on inputs last touched long ago (written by
// the layers before, or in the forward pass), and a row is too short for the hardware
// prefetcher to get going. Prefetches never fault; null rows are skipped.
template <typename T>
inline void prefetch_steps(const T* row, int64_t t0, int64_t n) {
  if (!row) return;
  constexpr int64_t kPerLine = 64 / sizeof(T);
  for (int64_t i = 0; i < n; i += kPerLine) __builtin_prefetch(row + t0 + i);
  __builtin_prefetch(row + t0 + n - 1);
}

// dt for steps [t0, t0+n) of a row: delta + bias, through softplus if asked (dt[i] for
// i >= n up to the next whole vector holds padding). Also the softplus derivative
// sigmoid(delta + bias) in dsp[0, n) when dsp is not null.
template <typename T>
void chunk_dt(const SelectiveScanParams& p, const RowPtrs<T>& r, int64_t t0, int64_t n, T* dt, T* dsp) {
  for (int64_t i = 0; i < n; i += kLanes<T>) {
    const Vec<T> raw = load_upto(r.delta + t0 + i, n - i) + r.bias;
    store(dt + i, p.delta_softplus ? vsoftplus(raw) : raw);
  }
  if (!dsp) return;
  for (int64_t i = 0; i < n; ++i) dsp[i] = p.delta_softplus ? sigmoid(r.delta[t0 + i] + r.bias) : T(1);
}

// sigmoid(z) of a vector (z padded with zeros past the sequence: finite).
template <typename V>
inline V vsigmoid(V z) {
  using S = std::remove_reference_t<decltype(z[0])>;
  return S(1) / (S(1) + vexp(-z));
}

// The rows channel d of batch b reads in a transposed B / C (ScanWork::Bt, Ct): its group's,
// step t at t * step; step 0: constant, the channel's own row for every step and batch.
template <typename T>
const T* bc_rows(const void* base, int64_t step, const SelectiveScanParams& p, const ScanWork& w, int64_t b,
                 int64_t d) {
  if (step == 0) return static_cast<const T*>(base) + d * w.dpad;
  const int64_t g = d / p.dim_per_group();
  return static_cast<const T*>(base) + ((b * p.n_groups + g) * p.seqlen) * w.dpad;
}

}  // namespace
}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
