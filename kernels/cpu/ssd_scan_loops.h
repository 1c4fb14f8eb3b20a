// The SSD scan's loops (kernels/cpu/ssd_scan.h says what they compute), written once and
// compiled per instruction set (ssd_scan_{baseline,avx2,avx512}.cpp define MAMBA_LRP_CPU_ISA).
//
// One task is one (batch, head) pair. It walks the sequence in blocks of steps in
// "processing order" (forward: t = k; transpose: t = L-1-k), gathering each block into
// scratch laid out for the products:
//   ld[i]   log decay of step i           (forward Δ_t A; transpose Δ_{t+1} A, 0 at t = L-1)
//   win[i]  weight of the input           (forward Δ_t;   transpose 1)
//   wout[i] weight of the read-out        (forward 1;     transpose Δ_t)
//   Bin  (N × ldq)  the vector the input is written along  (forward B; transpose C)
//   CoutT (Q × N)   the vector the state is read along     (forward C; transpose B)
//   xT (Q × P), yT (Q × P), M (the chunk's Q × Q matrix, rows ldq long)
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
  int64_t Q, ldq, N, P;
  std::vector<T> S, xT, yT, Bin, CoutT, M, cum, ld, win, wout, coef;
  Scratch(int64_t Q_, int64_t N_, int64_t P_) : Q(Q_), ldq((Q_ + 15) / 16 * 16), N(N_), P(P_) {
    S.resize(N * P), xT.resize(Q * P), yT.resize(Q * P), Bin.resize(N * ldq), CoutT.resize(Q * N);
    M.resize(Q * ldq), cum.resize(ldq), ld.resize(Q), win.resize(Q), wout.resize(Q), coef.resize(std::max(N, ldq));
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
    T* row = s.Bin.data() + n * s.ldq;
    if (p.transpose)
      for (int64_t i = 0; i < q; ++i) row[i] = in[n * in_stride + (L - 1 - (k0 + i))];
    else
      std::memcpy(row, in + n * in_stride + k0, q * sizeof(T));
    std::fill(row + q, row + s.ldq, T(0));
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
        const U cin = bc_u<U>(s.win[i] * s.Bin[n * s.ldq + i]);
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

// exp over a row, vectorised (the chunked form's decays: q of them per step).
template <typename T>
inline void exp_row(const T* in, int64_t n, T* out) {
  constexpr int64_t W = kLanes<T>;
  int64_t j = 0;
  for (; j + W <= n; j += W) store(out + j, vexp(load(in + j)));
  for (; j < n; ++j) out[j] = std::exp(in[j]);
}

// The chunked form's matrix products, R rows at a time so that each load of `mat` serves R
// rows (a register tile of R rows × NV vectors):
//   out_r[p] = out_scale out_r[p] + Σ_{k<K} coef[r cs + k] mat[k ld + p]   (r < rows, p < width)
// out_scale 0 starts from zero (out is not read).
template <typename T, int R>
inline void row_block_times_matrix(T* __restrict out, int64_t os, T out_scale, const T* __restrict coef, int64_t cs,
                                   int64_t K, const T* __restrict mat, int64_t ld, int64_t width) {
  constexpr int NVMAX = kVecBytes == 64 ? 4 : 2;
  using V = Vec<T>;
  constexpr int64_t W = kLanes<T>;
  auto tile = [&](auto nv, auto u, int64_t p0) {
    using U = decltype(u);
    constexpr int NV = decltype(nv)::value;
    constexpr int64_t UW = lanes_of<U, T>();
    U acc[R][NV];
    const U sc = bc_u<U>(out_scale);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = out_scale == T(0) ? U{} : sc * ld_u<U>(out + r * os + p0 + v * UW);
    for (int64_t k = 0; k < K; ++k) {
      U m[NV];
      for (int v = 0; v < NV; ++v) m[v] = ld_u<U>(mat + k * ld + p0 + v * UW);
      for (int r = 0; r < R; ++r) {
        const U c = bc_u<U>(coef[r * cs + k]);
        for (int v = 0; v < NV; ++v) acc[r][v] += c * m[v];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) st_u(out + r * os + p0 + v * UW, acc[r][v]);
  };
  int64_t p = 0;
  for (; p + NVMAX * W <= width; p += NVMAX * W) tile(std::integral_constant<int, NVMAX>{}, V{}, p);
  for (; p + W <= width; p += W) tile(std::integral_constant<int, 1>{}, V{}, p);
  for (; p < width; ++p) tile(std::integral_constant<int, 1>{}, T{}, p);
}

// The same for `rows` rows: blocks of 4, then one at a time. K(r0, n) and width(r0, n) give
// a block's inner length and width from its first row and row count.
template <typename T, typename KOf, typename WidthOf>
inline void rows_times_matrix(int64_t rows, T* out, int64_t os, T out_scale, const T* coef, int64_t cs, KOf K_of,
                              const T* mat, int64_t ld, WidthOf width_of) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    row_block_times_matrix<T, 4>(out + r * os, os, out_scale, coef + r * cs, cs, K_of(r, 4), mat, ld, width_of(r, 4));
  for (; r < rows; ++r)
    row_block_times_matrix<T, 1>(out + r * os, os, out_scale, coef + r * cs, cs, K_of(r, 1), mat, ld, width_of(r, 1));
}

// The chunked form on a gathered chunk of q steps.
template <typename T>
void chunk_block(int64_t q, bool state_is_zero, Scratch<T>& s) {
  const int64_t N = s.N, P = s.P, ldq = s.ldq;
  T run = 0;
  for (int64_t i = 0; i < q; ++i) s.cum[i] = run += s.ld[i];
  T* M = s.M.data();  // (q × ldq)
  // CB_ij = CoutT_i · Bin_j, each row to a multiple of 16 columns past the diagonal (Bin's
  // padding columns are 0): the part above the diagonal is computed in passing, then zeroed.
  rows_times_matrix(q, M, ldq, T(0), s.CoutT.data(), N, [&](int64_t, int64_t) { return N; }, s.Bin.data(), ldq,
                    [&](int64_t r0, int64_t n) { return std::min(ldq, (r0 + n + 15) / 16 * 16); });
  // M_ij = wout_i CB_ij exp(cum_i - cum_j) win_j for j <= i, 0 above.
  T* diff = s.coef.data();
  for (int64_t i = 0; i < q; ++i) {
    T* m = M + i * ldq;
    for (int64_t j = 0; j <= i; ++j) diff[j] = s.cum[i] - s.cum[j];
    exp_row(diff, i + 1, diff);
    for (int64_t j = 0; j <= i; ++j) m[j] *= s.wout[i] * diff[j] * s.win[j];
    std::fill(m + i + 1, m + q, T(0));
  }
  // y = M x (rows i0.. need columns up to their last row's diagonal).
  rows_times_matrix(q, s.yT.data(), P, T(0), M, ldq, [&](int64_t r0, int64_t n) { return r0 + n; }, s.xT.data(), P,
                    [&](int64_t, int64_t) { return P; });
  if (!state_is_zero) {
    // The state entering the chunk, read out: y_i += wout_i exp(cum_i) CoutT_i · S.
    for (int64_t i = 0; i < q; ++i) diff[i] = s.cum[i];
    exp_row(diff, q, diff);
    for (int64_t i = 0; i < q; ++i) {
      const T scale = s.wout[i] * diff[i];
      for (int64_t n = 0; n < N; ++n) s.CoutT[i * N + n] *= scale;
    }
    rows_times_matrix(q, s.yT.data(), P, T(1), s.CoutT.data(), N, [&](int64_t, int64_t) { return N; }, s.S.data(), P,
                      [&](int64_t, int64_t) { return P; });
  }
  // The state leaving it: S <- exp(cum_last) S + Σ_j exp(cum_last - cum_j) win_j Bin_j ⊗ x_j.
  const T last = s.cum[q - 1];
  for (int64_t j = 0; j < q; ++j) diff[j] = last - s.cum[j];
  exp_row(diff, q, diff);
  for (int64_t j = 0; j < q; ++j) diff[j] *= s.win[j];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < q; ++j) s.Bin[n * ldq + j] *= diff[j];
  // (A zero state starts from 0: exp(last) 0 would be 0 as well, unless exp overflowed.)
  const T total = state_is_zero ? T(0) : std::exp(last);
  rows_times_matrix(N, s.S.data(), P, total, s.Bin.data(), ldq, [&](int64_t, int64_t) { return q; }, s.xT.data(), P,
                    [&](int64_t, int64_t) { return P; });
}

template <typename T>
void rows_impl(const SsdScanParams<T>& p, int64_t begin, int64_t end) {
  const int64_t L = p.seqlen, N = p.dstate, P = p.head_dim;
  const bool chunked = p.chunk >= 2;
  const int64_t Q = chunked ? p.chunk : std::min<int64_t>(64, L);
  Scratch<T> s(Q, N, P);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / p.heads, h = task % p.heads;
    const T* init = p.init_state ? p.init_state + task * P * N : nullptr;
    bool zero = init == nullptr;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < P; ++c) s.S[n * P + c] = init ? init[c * N + n] : T(0);
    for (int64_t k0 = 0; k0 < L; k0 += Q) {
      const int64_t q = std::min(Q, L - k0);
      gather_block(p, b, h, k0, q, s);
      if (chunked) {
        chunk_block(q, zero, s);
        zero = false;
      } else {
        per_step_block(q, s);
      }
      scatter_block(p, b, h, k0, q, s);
    }
    if (p.last_state) {
      T* last = p.last_state + task * P * N;
      for (int64_t c = 0; c < P; ++c)
        for (int64_t n = 0; n < N; ++n) last[c * N + n] = s.S[n * P + c];
    }
  }
}

}  // namespace ssd

inline void ssd_rows(const SsdScanParams<float>& p, int64_t begin, int64_t end) { ssd::rows_impl(p, begin, end); }
inline void ssd_rows(const SsdScanParams<double>& p, int64_t begin, int64_t end) { ssd::rows_impl(p, begin, end); }

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
