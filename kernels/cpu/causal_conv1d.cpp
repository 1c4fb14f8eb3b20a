// Depthwise causal conv1d and its input gradient. One (batch, channel) row at a time: the
// row stays in L1 while each of the K taps adds a shifted copy of the input. The row loops
// are compiled for AVX-512, AVX2 and the baseline; the loader picks the clone the CPU runs.
#include "kernels/cpu/causal_conv1d.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace {

#define MAMBA_LRP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// exp(x) in float without a library call, so that the loops around it vectorize:
// exp(x) = 2^n exp(f) with n = round(x / ln2) (the 1.5 * 2^23 addition rounds) and
// f = x - n ln2 in two steps (ln2 split into a short high part and the rest, so f keeps
// its precision for large |x|), |f| <= ln2 / 2, exp(f) by its Taylor polynomial of degree
// 7 (truncation error < 6e-9, below float's rounding). x is clamped to [-87, 88].
inline __attribute__((always_inline)) float exp_f32(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float f = (x - n * 0.693145751953125f) - n * 1.42860676533018708e-6f;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline float exp_of(float x) { return exp_f32(x); }
inline double exp_of(double x) { return std::exp(x); }  // float64 (tests, references): the library's

// silu and sigmoid of the row c, each written where asked.
template <typename T>
inline __attribute__((always_inline)) void silu_row_impl(const T* c, int64_t L, T* silu, T* sig) {
  if (silu && sig)
    for (int64_t t = 0; t < L; ++t) {
      const T s = T(1) / (T(1) + exp_of(-c[t]));
      sig[t] = s;
      silu[t] = c[t] * s;
    }
  else if (silu)
    for (int64_t t = 0; t < L; ++t) silu[t] = c[t] / (T(1) + exp_of(-c[t]));
  else if (sig)
    for (int64_t t = 0; t < L; ++t) sig[t] = T(1) / (T(1) + exp_of(-c[t]));
}

template <typename T>
inline __attribute__((always_inline)) void conv_row_impl(const T* x, const T* w, T b, int64_t L, int64_t K, T* out) {
  std::fill(out, out + L, b);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t shift = K - 1 - k;  // tap k reads x[t - shift]
    const T wk = w[k];
    for (int64_t t = shift; t < L; ++t) out[t] += wk * x[t - shift];
  }
}

template <typename T>
inline __attribute__((always_inline)) void conv_grad_row_impl(const T* g_out, const T* scale, const T* w, int64_t L,
                                                              int64_t K, T* g_scaled, T* gx) {
  const T* g = g_out;
  if (scale) {
    for (int64_t t = 0; t < L; ++t) g_scaled[t] = g_out[t] * scale[t];
    g = g_scaled;
  } else if (gx == g_out) {  // in place: the row is read from a copy
    std::copy(g_out, g_out + L, g_scaled);
    g = g_scaled;
  }
  std::fill(gx, gx + L, T(0));
  for (int64_t k = 0; k < K; ++k) {
    const int64_t shift = K - 1 - k;  // out[s + shift] read x[s] through tap k
    const T wk = w[k];
    for (int64_t s = 0; s + shift < L; ++s) gx[s] += wk * g[s + shift];
  }
}

MAMBA_LRP_CLONES void conv_row(const float* x, const float* w, float b, int64_t L, int64_t K, float* out) {
  conv_row_impl(x, w, b, L, K, out);
}
MAMBA_LRP_CLONES void conv_row(const double* x, const double* w, double b, int64_t L, int64_t K, double* out) {
  conv_row_impl(x, w, b, L, K, out);
}
MAMBA_LRP_CLONES void silu_row(const float* c, int64_t L, float* silu, float* sig) { silu_row_impl(c, L, silu, sig); }
MAMBA_LRP_CLONES void silu_row(const double* c, int64_t L, double* silu, double* sig) {
  silu_row_impl(c, L, silu, sig);
}
MAMBA_LRP_CLONES void conv_grad_row(const float* g, const float* scale, const float* w, int64_t L, int64_t K,
                                    float* g_scaled, float* gx) {
  conv_grad_row_impl(g, scale, w, L, K, g_scaled, gx);
}
MAMBA_LRP_CLONES void conv_grad_row(const double* g, const double* scale, const double* w, int64_t L, int64_t K,
                                    double* g_scaled, double* gx) {
  conv_grad_row_impl(g, scale, w, L, K, g_scaled, gx);
}

// Rows per task: enough work (about 32k elements) to be worth a thread.
int64_t row_grain(int64_t seqlen) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(seqlen, 1)); }

template <typename T>
void fwd_impl(const CausalConv1dParams<T>& p, ParallelFor parallel_for) {
  run_parallel(parallel_for, p.batch * p.channels, row_grain(p.seqlen), [&p](int64_t begin, int64_t end) {
    std::vector<T> row_buffer(p.out ? 0 : p.seqlen);  // c when only its SiLU is asked for
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / p.channels, c = r % p.channels, at = r * p.seqlen;
      T* conv = p.out ? p.out + at : row_buffer.data();
      conv_row(p.x + b * p.x_batch_stride + c * p.x_channel_stride, p.weight + c * p.width,
               p.bias ? p.bias[c] : T(0), p.seqlen, p.width, conv);
      if (p.silu || p.sigmoid)
        silu_row(conv, p.seqlen, p.silu ? p.silu + at : nullptr, p.sigmoid ? p.sigmoid + at : nullptr);
    }
  });
}

template <typename T>
void bwd_impl(const CausalConv1dBwdParams<T>& p, ParallelFor parallel_for) {
  run_parallel(parallel_for, p.batch * p.channels, row_grain(p.seqlen), [&p](int64_t begin, int64_t end) {
    std::vector<T> g_scaled(p.scale || p.grad_x == p.grad_out ? p.seqlen : 0);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t c = r % p.channels;
      conv_grad_row(p.grad_out + r * p.seqlen, p.scale ? p.scale + r * p.seqlen : nullptr, p.weight + c * p.width,
                    p.seqlen, p.width, g_scaled.data(), p.grad_x + r * p.seqlen);
    }
  });
}

}  // namespace

void causal_conv1d_fwd(const CausalConv1dParams<float>& p, ParallelFor pf) { fwd_impl(p, pf); }
void causal_conv1d_fwd(const CausalConv1dParams<double>& p, ParallelFor pf) { fwd_impl(p, pf); }
void causal_conv1d_bwd(const CausalConv1dBwdParams<float>& p, ParallelFor pf) { bwd_impl(p, pf); }
void causal_conv1d_bwd(const CausalConv1dBwdParams<double>& p, ParallelFor pf) { bwd_impl(p, pf); }

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
