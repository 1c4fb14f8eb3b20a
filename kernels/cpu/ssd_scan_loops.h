// The SSD scan's loops (kernels/cpu/ssd_scan.h says what they compute), written once and
// compiled per instruction set (ssd_scan_{baseline,avx2,avx512}.cpp define MAMBA_LRP_CPU_ISA):
// the per-step form here, the chunked form in ssd_scan_chunked.h.
//
// Per step, one task is one (batch, head) pair. It walks the sequence in blocks of steps in
// "processing order" (forward: t = k; transpose: t = L-1-k), gathering each block into
// scratch:
//   ld[i]   log decay of step i           (forward Δ_t A; transpose Δ_{t+1} A, 0 at t = L-1)
//   win[i]  weight of the input           (forward Δ_t;   transpose 1)
//   wout[i] weight of the read-out        (forward 1;     transpose Δ_t)
//   Bin  (N × Q)  the vector the input is written along  (forward B; transpose C)
//   CoutT (Q × N) the vector the state is read along     (forward C; transpose B)
//   xT (Q × P), yT (Q × P)
// and keeps the state S as (N × P), P contiguous. Then
//   S_i = exp(ld_i) S_{i-1} + win_i Bin_i ⊗ x_i,  y_i = wout_i CoutT_i · S_i + D x_i.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/simd_math.h"
#include "kernels/cpu/ssd_scan.h"
#include "kernels/cpu/ssd_scan_chunked.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace ssd {

// One lane type U: a vector Vec<T> or the scalar T itself (tails), with the same helpers.
template <typename U, typename T> inline U ld_u(const T* p) { U v; std::memcpy(&v, p, sizeof(U)); return v; }
template <typename U, typename T> inline void st_u(T* p, U v) { std::memcpy(p, &v, sizeof(U)); }
template <typename U, typename T> inline U bc_u(T x) { return U{} + x; }
template <typename U, typename T> constexpr int64_t lanes_of() { return sizeof(U) / sizeof(T); }

// body(std::integral_constant<int, NV>, U{}, p0) for tiles of NV vectors of U covering [0, width).
template <typename T, typename Body>
inline void over_tiles(int64_t width, Body&& body) {
  using V = Vec<T>;
  constexpr int64_t W = kLanes<T>;
  int64_t p = 0;
  for (; p + 4 * W <= width; p += 4 * W) body(std::integral_constant<int, 4>{}, V{}, p);
  for (; p + W <= width; p += W) body(std::integral_constant<int, 1>{}, V{}, p);
  for (; p < width; ++p) body(std::integral_constant<int, 1>{}, T{}, p);
}

// The scratch of one task (one thread runs its tasks one after the other with it).
template <typename T>
struct Scratch {
  int64_t Q, N, P;
  std::vector<T> S, xT, yT, Bin, CoutT, ld, win, wout;
  Scratch(int64_t Q_, int64_t N_, int64_t P_) : Q(Q_), N(N_), P(P_) {
    S.resize(N * P), xT.resize(Q * P), yT.resize(Q * P), Bin.resize(N * Q), CoutT.resize(Q * N);
    ld.resize(Q), win.resize(Q), wout.resize(Q);
  }
};

// Gathers steps [k0, k0 + q) of task (b, h) in processing order into the scratch.
template <typename T>
void gather_block(const SsdScanParams<T>& p, int64_t b, int64_t h, int64_t k0, int64_t q, Scratch<T>& s) {
  const int64_t L = p.seqlen, N = p.dstate, P = p.head_dim, g = h / (p.heads / p.groups);
  const T A = p.A[h];
  const T* delta = p.delta + b * p.delta_batch_stride + h * p.delta_head_stride;
  const T* x = p.x + b * p.x_batch_stride + h * p.x_head_stride;
  const T* Bsrc = p.B + b * p.B_batch_stride + g * p.B_group_stride;
  const T* Csrc = p.C + b * p.C_batch_stride + g * p.C_group_stride;
  const T* in = p.transpose ? Csrc : Bsrc;
  const T* rd = p.transpose ? Bsrc : Csrc;
  const int64_t in_stride = p.transpose ? p.C_state_stride : p.B_state_stride;
  const int64_t rd_stride = p.transpose ? p.B_state_stride : p.C_state_stride;
  for (int64_t i = 0; i < q; ++i) {
    const int64_t t = p.transpose ? L - 1 - (k0 + i) : k0 + i;
    if (p.transpose) {
      s.ld[i] = t + 1 < L ? delta[t + 1] * A : T(0);
      s.win[i] = T(1), s.wout[i] = delta[t];
    } else {
      s.ld[i] = delta[t] * A;
      s.win[i] = delta[t], s.wout[i] = T(1);
    }
    for (int64_t n = 0; n < N; ++n) s.CoutT[i * N + n] = rd[n * rd_stride + t];
    for (int64_t c = 0; c < P; ++c) s.xT[i * P + c] = x[c * p.x_dim_stride + t];
  }
  for (int64_t n = 0; n < N; ++n) {
    T* row = s.Bin.data() + n * s.Q;
    if (p.transpose)
      for (int64_t i = 0; i < q; ++i) row[i] = in[n * in_stride + (L - 1 - (k0 + i))];
    else
      std::memcpy(row, in + n * in_stride + k0, q * sizeof(T));
  }
  std::fill(s.yT.begin(), s.yT.begin() + q * P, T(0));
}

// out[p][t] = yT[i][p] + D x, for the block's steps.
template <typename T>
void scatter_block(const SsdScanParams<T>& p, int64_t b, int64_t h, int64_t k0, int64_t q, const Scratch<T>& s) {
  const int64_t L = p.seqlen, P = p.head_dim;
  const T Dh = p.D ? p.D[h] : T(0);
  T* out = p.out + b * p.out_batch_stride + h * p.out_head_stride;
  for (int64_t i = 0; i < q; ++i) {
    const int64_t t = p.transpose ? L - 1 - (k0 + i) : k0 + i;
    for (int64_t c = 0; c < P; ++c) out[c * p.out_dim_stride + t] = s.yT[i * P + c] + Dh * s.xT[i * P + c];
  }
}

// The per-step form on a gathered block: one exp per step; the tile of S of each state
// row is updated and read out while in registers, the tile of y accumulates over the rows.
template <typename T>
void per_step_block(int64_t q, Scratch<T>& s) {
  const int64_t N = s.N, P = s.P;
  for (int64_t i = 0; i < q; ++i) {
    const T a = std::exp(s.ld[i]);
    const T* xrow = s.xT.data() + i * P;
    T* yrow = s.yT.data() + i * P;
    const T* crow = s.CoutT.data() + i * N;
    over_tiles<T>(P, [&](auto nv, auto u, int64_t p0) {
      using U = decltype(u);
      constexpr int NV = decltype(nv)::value;
      constexpr int64_t W = lanes_of<U, T>();
      U xv[NV], yv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = ld_u<U>(xrow + p0 + v * W), yv[v] = U{};
      const U av = bc_u<U>(a);
      for (int64_t n = 0; n < N; ++n) {
        const U cin = bc_u<U>(s.win[i] * s.Bin[n * s.Q + i]);
        const U cout = bc_u<U>(s.wout[i] * crow[n]);
        T* srow = s.S.data() + n * P + p0;
        for (int v = 0; v < NV; ++v) {
          const U sv = av * ld_u<U>(srow + v * W) + cin * xv[v];
          st_u(srow + v * W, sv);
          yv[v] += cout * sv;
        }
      }
      for (int v = 0; v < NV; ++v) st_u(yrow + p0 + v * W, yv[v]);
    });
  }
}

template <typename T>
void per_step_tasks(const SsdScanParams<T>& p, int64_t begin, int64_t end) {
  const int64_t L = p.seqlen, N = p.dstate, P = p.head_dim;
  const int64_t Q = std::min<int64_t>(64, L);
  Scratch<T> s(Q, N, P);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / p.heads, h = task % p.heads;
    const T* init = p.init_state ? p.init_state + task * P * N : nullptr;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < P; ++c) s.S[n * P + c] = init ? init[c * N + n] : T(0);
    for (int64_t k0 = 0; k0 < L; k0 += Q) {
      const int64_t q = std::min(Q, L - k0);
      gather_block(p, b, h, k0, q, s);
      per_step_block(q, s);
      scatter_block(p, b, h, k0, q, s);
    }
    if (p.last_state) {
      T* last = p.last_state + task * P * N;
      for (int64_t c = 0; c < P; ++c)
        for (int64_t n = 0; n < N; ++n) last[c * N + n] = s.S[n * P + c];
    }
  }
}

template <typename T>
void rows_impl(const SsdScanParams<T>& p, int64_t begin, int64_t end) {
  if (p.chunk >= 2) chunked_tasks(p, begin, end);
  else per_step_tasks(p, begin, end);
}

}  // namespace ssd

inline void ssd_rows(const SsdScanParams<float>& p, int64_t begin, int64_t end) { ssd::rows_impl(p, begin, end); }
inline void ssd_rows(const SsdScanParams<double>& p, int64_t begin, int64_t end) { ssd::rows_impl(p, begin, end); }

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
