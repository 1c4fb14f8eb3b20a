// The chunked SSD form (kernels/cpu/ssd_scan.h), written once and compiled per instruction
// set with the per-step form (ssd_scan_loops.h includes it).
//
// One task is one (batch, group) pair and a block of the group's heads: all of them share B
// and C, so what depends on B and C alone is computed once per chunk for the block. Time
// runs in chunks of Q steps [t0, t0 + q), in order (forward) or last chunk first
// (transpose). With cum_i = Σ_{k <= i} Δ_{t0+k} A_h within the chunk (inclusive), both
// directions are, per head and chunk, in the chunk's own time order:
//   Y = X W                   the chunk's inputs to its outputs (W: Q × Q, triangular),
//   Y += (S Vr) diag(ro)      the state entering the chunk, read out along Vr,
//   S <- e S + X diag(in) Viᵀ the state leaving it (e = exp(cum_last)),
// with the state S as (head_dim P × d_state N), X, Y as (P × Q) and
//   forward   (x in, y out):   Vr = C, Vi = B, ro_o = exp(cum_o),               in_u = Δ_u exp(cum_last - cum_u),
//                              W_uo = (B_u·C_o) exp(cum_o - cum_u) Δ_u  for u <= o;
//   transpose (dy in, dx out): Vr = B, Vi = C, ro_o = Δ_o exp(cum_last - cum_o), in_u = exp(cum_u),
//                              W_uo = (C_u·B_o) exp(cum_u - cum_o) Δ_o  for u >= o;
// and D_h added on W's diagonal. In the transpose S is the gradient flowing back in time: the
// last state's gradient (init_state) enters the last chunk, and what leaves chunk 0 is unused.
// All exponents are differences of cum taken in the direction of the decay, so they are <= 0
// when A <= 0 (no overflow however strong the decay).
//
// The products (ssd_scan_gemm.h) run on packed scratch whose rows are padded to a whole
// number of vectors (ldq for time, ldn for the state), with zeros in the padding of the
// matrices whose padding is read: Vr's and Viᵀ's.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/simd_math.h"
#include "kernels/cpu/ssd_scan.h"
#include "kernels/cpu/ssd_scan_gemm.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace ssd {

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Outputs of this size or more (a core's second-level cache) are written past the caches
// (non-temporal stores): they would leave that cache anyway, and an ordinary store first
// reads each line from memory (measured: 25 MB of out rows 4.5x faster written this way).
constexpr int64_t kStreamOutBytes = int64_t(2) << 20;

// One vector stored past the caches (p vector-aligned).
inline void stream_vector(float* p, Vec<float> v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, (__m512)v);
#elif defined(__AVX__)
  _mm256_stream_ps(p, (__m256)v);
#elif defined(__SSE2__)
  _mm_stream_ps(p, (__m128)v);
#else
  store(p, v);
#endif
}
inline void stream_vector(double* p, Vec<double> v) {
#if defined(__AVX512F__)
  _mm512_stream_pd(p, (__m512d)v);
#elif defined(__AVX__)
  _mm256_stream_pd(p, (__m256d)v);
#elif defined(__SSE2__)
  _mm_stream_pd(p, (__m128d)v);
#else
  store(p, v);
#endif
}

// dst[0, n) = src[0, n); with `stream`, the vector-aligned part with non-temporal stores.
template <typename T>
inline void write_row(T* dst, const T* src, int64_t n, bool stream) {
  if (!stream) {
    std::memcpy(dst, src, n * sizeof(T));
    return;
  }
  constexpr int64_t W = kLanes<T>;
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % kVecBytes != 0; ++i) dst[i] = src[i];
  for (; i + W <= n; i += W) stream_vector(dst + i, load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// The most bytes the group's part of a super-chunk takes (C Bᵀ, Vr, Viᵀ of its chunks).
constexpr int64_t kSuperChunkBytes = int64_t(384) << 10;

// The scratch of one task (a thread runs its tasks one after the other with it).
template <typename T>
struct ChunkScratch {
  int64_t Q, ldq, N, ldn, P;
  std::vector<T> S;          // (heads in the block × P × ldn): each head's state
  int64_t span;              // chunks per super-chunk: the group's part of each is kept at once
  std::vector<T> VrP;        // span × (N × ldq)  the read-out vectors of each chunk
  std::vector<T> ViT;        // span × (Q × ldn)  the input vectors, one row per step
  std::vector<T> CB;         // span × (Q × ldq)  CB_uo = Vi_u · Vr_o
  std::vector<T> Wm;         // (Q × ldq)   one head's W
  std::vector<T> X, Xw, Y;   // (P × ldq)   one head's inputs, them weighted by `in`, its outputs
  std::vector<T> dt, cum, ro, in;   // (ldq): Δ (zero in the padding), cum, the weights
  ChunkScratch(int64_t heads, int64_t Q_, int64_t N_, int64_t P_, int64_t chunks)
      : Q(Q_), ldq(round_up(Q_, kLanes<T>)), N(N_), ldn(round_up(N_, kLanes<T>)), P(P_) {
    const int64_t slot_bytes = (N * ldq + Q * ldn + Q * ldq) * static_cast<int64_t>(sizeof(T));
    span = std::max<int64_t>(1, std::min<int64_t>(chunks, kSuperChunkBytes / slot_bytes));
    S.resize(heads * P * ldn), VrP.resize(span * N * ldq), ViT.resize(span * Q * ldn), CB.resize(span * Q * ldq);
    Wm.resize(Q * ldq);
    X.resize(P * ldq), Xw.resize(P * ldq), Y.resize(P * ldq);
    dt.resize(ldq), cum.resize(ldq), ro.resize(ldq), in.resize(ldq);
  }
};

// What the heads of a (batch, group) share in the chunk [t0, t0 + q): Vr packed, Vi
// transposed, and CB = Viᵀ Vr.
template <typename T>
void pack_group_chunk(const SsdScanParams<T>& p, int64_t b, int64_t g, int64_t t0, int64_t q, ChunkScratch<T>& s,
                      int64_t slot) {
  const int64_t N = s.N, ldq = s.ldq, ldn = s.ldn;
  T* VrP = s.VrP.data() + slot * N * ldq;
  T* ViT = s.ViT.data() + slot * s.Q * ldn;
  const T* Bsrc = p.B + b * p.B_batch_stride + g * p.B_group_stride + t0;
  const T* Csrc = p.C + b * p.C_batch_stride + g * p.C_group_stride + t0;
  const T* vr = p.transpose ? Bsrc : Csrc;
  const T* vi = p.transpose ? Csrc : Bsrc;
  const int64_t vr_stride = p.transpose ? p.B_state_stride : p.C_state_stride;
  const int64_t vi_stride = p.transpose ? p.C_state_stride : p.B_state_stride;
  for (int64_t n = 0; n < N; ++n) {
    T* row = VrP + n * ldq;
    std::memcpy(row, vr + n * vr_stride, q * sizeof(T));
    std::fill(row + q, row + ldq, T(0));
  }
  std::fill(ViT, ViT + s.Q * ldn, T(0));
  for (int64_t n = 0; n < N; ++n) {
    const T* src = vi + n * vi_stride;
    for (int64_t u = 0; u < q; ++u) ViT[u * ldn + n] = src[u];
  }
  gemm(q, ldq, ViT, ldn, VrP, ldq, FullK{N}, s.CB.data() + slot * s.Q * ldq, ldq, Epilogue<T>{});
}

// One head's chunk: Y = X W (+ the state read out) written out, the state passed on.
template <typename T>
void head_chunk(const SsdScanParams<T>& p, int64_t b, int64_t h, int64_t t0, int64_t q, bool state_is_zero, T* S,
                bool stream_out, ChunkScratch<T>& s, int64_t slot) {
  const int64_t P = s.P, N = s.N, ldq = s.ldq, ldn = s.ldn;
  const T* VrP = s.VrP.data() + slot * N * ldq;
  const T* ViT = s.ViT.data() + slot * s.Q * ldn;
  const T A = p.A[h], Dh = p.D ? p.D[h] : T(0);
  const T* delta = p.delta + b * p.delta_batch_stride + h * p.delta_head_stride + t0;
  using V = Vec<T>;
  constexpr int64_t W = kLanes<T>;
  T *dt = s.dt.data(), *cum = s.cum.data(), *ro = s.ro.data(), *in = s.in.data();
  T run = 0;
  for (int64_t i = 0; i < q; ++i) dt[i] = delta[i], cum[i] = run += delta[i] * A;
  std::fill(dt + q, dt + ldq, T(0));
  std::fill(cum + q, cum + ldq, run);  // padding: finite exponents (their columns are zero)
  const T last = run;
  const V lastv = broadcast(last);
  // The read-out weights ro and the input weights in.
  for (int64_t i = 0; i < ldq; i += W) {
    const V c = load(cum + i), d = load(dt + i), to_last = vexp(lastv - c), from_start = vexp(c);
    store(ro + i, p.transpose ? d * to_last : from_start);
    store(in + i, p.transpose ? from_start : d * to_last);
  }
  std::fill(ro + q, ro + ldq, T(0));
  // W from CB: row u holds the outputs o input u reaches (forward o >= u, transpose o <= u),
  // computed in whole vectors, then the part out of reach set to 0.
  for (int64_t u = 0; u < q; ++u) {
    const T* cb = s.CB.data() + (slot * s.Q + u) * ldq;
    T* w = s.Wm.data() + u * ldq;
    const V cu = broadcast(cum[u]);
    if (!p.transpose) {
      const V du = broadcast(dt[u]);
      for (int64_t o = u / W * W; o < ldq; o += W) store(w + o, vexp(load(cum + o) - cu) * load(cb + o) * du);
      std::fill(w, w + u, T(0));
    } else {
      for (int64_t o = 0; o <= u; o += W) store(w + o, vexp(cu - load(cum + o)) * load(cb + o) * load(dt + o));
      std::fill(w + u + 1, w + ldq, T(0));
    }
    w[u] += Dh;
  }
  // This head's inputs, packed (X) and weighted by `in` (Xw), in one pass over x's rows
  // (independent loads: the rows come from memory faster than inside a product).
  const T* x = p.x + b * p.x_batch_stride + h * p.x_head_stride + t0;
  const int64_t whole = q / W * W;
  for (int64_t c = 0; c < P; ++c) {
    const T* xr = x + c * p.x_dim_stride;
    T* xp = s.X.data() + c * ldq;
    T* xw = s.Xw.data() + c * ldq;
    for (int64_t u = 0; u < whole; u += W) {
      const V v = load(xr + u);
      store(xp + u, v), store(xw + u, v * load(in + u));
    }
    for (int64_t u = whole; u < q; ++u) xp[u] = xr[u], xw[u] = xr[u] * in[u];
  }
  // Y = (S Vr) diag(ro) + X W in scratch, then written to out.
  const int64_t cols = round_up(q, W);
  T* y = s.Y.data();
  if (!state_is_zero) {
    Epilogue<T> e;
    e.scale = ro;
    gemm(P, cols, S, ldn, VrP, ldq, FullK{N}, y, ldq, e);
  }
  // Each column tile of X W sums over the inputs that reach it.
  auto reach = [&](int64_t o0, int64_t o1) -> std::pair<int64_t, int64_t> {
    return p.transpose ? std::pair<int64_t, int64_t>{std::min(o0, q), q}
                       : std::pair<int64_t, int64_t>{0, std::min(o1, q)};
  };
  Epilogue<T> e_intra;
  e_intra.beta = state_is_zero ? T(0) : T(1);
  gemm(P, cols, s.X.data(), ldq, s.Wm.data(), ldq, reach, y, ldq, e_intra);
  T* out = p.out + b * p.out_batch_stride + h * p.out_head_stride + t0;
  for (int64_t c = 0; c < P; ++c) write_row(out + c * p.out_dim_stride, y + c * ldq, q, stream_out);
  // The state leaving the chunk: S <- exp(cum_last) S + (X diag(in)) Viᵀ.
  Epilogue<T> e;
  e.beta = state_is_zero ? T(0) : std::exp(last);
  gemm(P, ldn, s.Xw.data(), ldq, ViT, ldn, FullK{q}, S, ldn, e);
}

// While alive, results below the smallest normal number are 0 and are read as 0 (the SSE
// control register's flush-to-zero and denormals-are-zero bits, restored after). The chunk's
// decay weights reach far below it (exp(-100) and less over a long chunk with a strong
// decay), and products with such subnormal numbers take a slow microcode path on x86: 2-3x
// slower chunks for contributions 30 orders of magnitude below a float's rounding.
class FlushSubnormals {
 public:
#if defined(__SSE2__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }
 private:
  unsigned saved_;
#endif
};

template <typename T>
void chunked_tasks(const SsdScanParams<T>& p, int64_t begin, int64_t end) {
  const int64_t L = p.seqlen, N = p.dstate, P = p.head_dim, Q = std::min(p.chunk, L);
  const int64_t hg = p.heads / p.groups;
  const int64_t blocks = ssd_chunked_head_blocks(p);
  const int64_t per_block = (hg + blocks - 1) / blocks;
  const int64_t chunks = (L + Q - 1) / Q;
  ChunkScratch<T> s(per_block, Q, N, P, chunks);
  FlushSubnormals flush;
  const bool stream_out = p.batch * p.heads * P * L * static_cast<int64_t>(sizeof(T)) >= kStreamOutBytes;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / (p.groups * blocks), g = task / blocks % p.groups, blk = task % blocks;
    const int64_t h0 = g * hg + blk * per_block, h1 = std::min(g * hg + hg, h0 + per_block);
    if (h0 >= h1) continue;
    for (int64_t h = h0; h < h1; ++h) {
      T* S = s.S.data() + (h - h0) * P * s.ldn;
      const T* init = p.init_state ? p.init_state + (b * p.heads + h) * P * N : nullptr;
      for (int64_t c = 0; c < P; ++c) {
        for (int64_t n = 0; n < N; ++n) S[c * s.ldn + n] = init ? init[c * N + n] : T(0);
        std::fill(S + c * s.ldn + N, S + (c + 1) * s.ldn, T(0));
      }
    }
    // Chunks in super-chunks of `span`: the group's part of each, then every head through
    // them (each row of x and out is then read and written span chunks at a stretch, and a
    // head's state stays in the nearer caches over them).
    auto chunk_start = [&](int64_t k) { return (p.transpose ? chunks - 1 - k : k) * Q; };
    for (int64_t k0 = 0; k0 < chunks; k0 += s.span) {
      const int64_t n = std::min(s.span, chunks - k0);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t t0 = chunk_start(k0 + j);
        pack_group_chunk(p, b, g, t0, std::min(Q, L - t0), s, j);
      }
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t t0 = chunk_start(k0 + j);
          head_chunk(p, b, h, t0, std::min(Q, L - t0), k0 + j == 0 && !p.init_state,
                     s.S.data() + (h - h0) * P * s.ldn, stream_out, s, j);
        }
    }
    if (p.last_state)
      for (int64_t h = h0; h < h1; ++h) {
        const T* S = s.S.data() + (h - h0) * P * s.ldn;
        T* last = p.last_state + (b * p.heads + h) * P * N;
        for (int64_t c = 0; c < P; ++c) std::memcpy(last + c * N, S + c * s.ldn, N * sizeof(T));
      }
  }
#if defined(__SSE2__)
  if (stream_out) _mm_sfence();  // the non-temporal stores are done before the threads join
#endif
}

}  // namespace ssd
}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
