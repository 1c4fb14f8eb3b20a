// 16-lane vectors (GCC vector extensions) and branch-free exp / softplus on them.
// The same source is compiled once per instruction set (baseline, AVX2, AVX-512);
// GCC lowers a 16-lane vector to 4, 2 or 1 register(s) of that set.
//
// exp uses the classic Cody–Waite range reduction x = k ln2 + r, |r| <= ln2/2, then
// a minimax polynomial (float, ~1 ulp) or a Padé form (double, ~1 ulp), and scales by
// 2^k through the exponent bits. Inputs below the smallest normal result give 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// Everything below lives in a namespace per instruction set (MAMBA_LRP_CPU_ISA), so the
// three compilations never share an inline function (which the linker could otherwise
// fold into one, running AVX-512 code on a machine without it).
#ifndef MAMBA_LRP_CPU_ISA
#error "define MAMBA_LRP_CPU_ISA before including simd_math.h"
#endif

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {

constexpr int kLanes = 16;

template <typename T> struct VecTraits;
template <> struct VecTraits<float> {
  typedef float vec __attribute__((vector_size(kLanes * sizeof(float))));
  typedef int32_t ivec __attribute__((vector_size(kLanes * sizeof(int32_t))));
};
template <> struct VecTraits<double> {
  typedef double vec __attribute__((vector_size(kLanes * sizeof(double))));
  typedef int64_t ivec __attribute__((vector_size(kLanes * sizeof(int64_t))));
};
template <typename T> using Vec = typename VecTraits<T>::vec;
template <typename T> using IVec = typename VecTraits<T>::ivec;

template <typename T> inline Vec<T> broadcast(T x) { return Vec<T>{} + x; }
template <typename T> inline Vec<T> load(const T* p) { Vec<T> v; std::memcpy(&v, p, sizeof(v)); return v; }
template <typename T> inline void store(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }

// Sum of the 16 lanes by halving (4 shuffle+add levels).
inline float hsum(Vec<float> v) {
  typedef float v8 __attribute__((vector_size(8 * sizeof(float))));
  typedef float v4 __attribute__((vector_size(4 * sizeof(float))));
  v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}
inline double hsum(Vec<double> v) {
  typedef double v8 __attribute__((vector_size(8 * sizeof(double))));
  typedef double v4 __attribute__((vector_size(4 * sizeof(double))));
  v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

inline Vec<float> vexp(Vec<float> x) {
  using V = Vec<float>;
  using I = IVec<float>;
  const V hi = broadcast(88.3762626647949f), lo = broadcast(-87.3365447504f);
  V xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  // k = round(x / ln2)
  V kf = xc * 1.44269504088896341f + 0.5f;
  I ki = __builtin_convertvector(kf, I);
  ki += (kf < __builtin_convertvector(ki, V));  // mask is -1 where true: floor for negatives
  kf = __builtin_convertvector(ki, V);
  V r = xc - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  V p = broadcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  V e = p * (r * r) + r + 1.0f;
  I bits = (ki + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  V res = e * scale;
  return x < lo ? broadcast(0.0f) : res;
}

inline Vec<double> vexp(Vec<double> x) {
  using V = Vec<double>;
  using I = IVec<double>;
  const V hi = broadcast(709.436139303), lo = broadcast(-708.39641853226408);
  V xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  V kf = xc * 1.4426950408889634073599 + 0.5;
  I ki = __builtin_convertvector(kf, I);
  ki += (kf < __builtin_convertvector(ki, V));  // mask is -1 where true: floor for negatives
  kf = __builtin_convertvector(ki, V);
  V r = xc - kf * 6.93145751953125E-1;
  r = r - kf * 1.42860682030941723212E-6;
  V rr = r * r;
  V px = ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr + 9.99999999999999999910E-1) * r;
  V qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr + 2.27265548208155028766E-1) * rr +
         2.00000000000000000009E0;
  V e = 1.0 + 2.0 * px / (qx - px);
  I bits = (ki + 1023) << 52;
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  V res = e * scale;
  return x < lo ? broadcast(0.0) : res;
}

// log(w) for w in [1, 2] (all softplus needs): w = 2^e m with m in [sqrt(1/2), sqrt(2)).
inline Vec<float> vlog_1_2(Vec<float> w) {
  using V = Vec<float>;
  using I = IVec<float>;
  I bits;
  std::memcpy(&bits, &w, sizeof(bits));
  I e = ((bits >> 23) & 0xff) - 126;
  I mbits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  V m;
  std::memcpy(&m, &mbits, sizeof(m));
  I small = m < 0.707106781186547524f;  // -1 where true
  e += small;                           // e - 1
  m = small ? m + m - 1.0f : m - 1.0f;
  V ef = __builtin_convertvector(e, V);
  V z = m * m;
  V y = broadcast(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += ef * -2.12194440e-4f;
  y -= 0.5f * z;
  return m + y + ef * 0.693359375f;
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), with log1p(t) = log(1+t) * t / ((1+t) - 1)
// (exact to rounding for tiny t; t itself where 1+t rounds to 1).
inline Vec<float> vsoftplus(Vec<float> x) {
  using V = Vec<float>;
  V ax = x < 0.0f ? -x : x;
  V t = vexp(-ax);
  V w = t + 1.0f;
  V d = w - 1.0f;
  V l1p = d == 0.0f ? t : vlog_1_2(w) * (t / (d == 0.0f ? broadcast(1.0f) : d));
  return (x > 0.0f ? x : broadcast(0.0f)) + l1p;
}

inline Vec<double> vsoftplus(Vec<double> x) {
  Vec<double> r;
  for (int k = 0; k < kLanes; ++k) r[k] = x[k] > 0 ? x[k] + std::log1p(std::exp(-x[k])) : std::log1p(std::exp(x[k]));
  return r;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
