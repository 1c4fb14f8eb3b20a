// Vectors (GCC vector extensions) one register wide, and branch-free exp / softplus on
// them. The same source is compiled once per instruction set (baseline SSE2, AVX2,
// AVX-512): 4, 8 or 16 floats a vector.
//
// exp uses the classic Cody–Waite range reduction x = k ln2 + r, |r| <= ln2/2, then
// a minimax polynomial (float, ~1 ulp) or a Padé form (double, ~1 ulp), and scales by
// 2^k through the exponent bits. Inputs below the smallest normal result give 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

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

// One vector is one register of the instruction set this file is compiled for (wider
// generic vectors get some operations, comparisons among them, lowered to scalar code).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
template <typename T>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));

template <typename T> struct VecTraits;
template <> struct VecTraits<float> {
  typedef float vec __attribute__((vector_size(kVecBytes)));
  typedef int32_t ivec __attribute__((vector_size(kVecBytes)));
};
template <> struct VecTraits<double> {
  typedef double vec __attribute__((vector_size(kVecBytes)));
  typedef int64_t ivec __attribute__((vector_size(kVecBytes)));
};
template <typename T> using Vec = typename VecTraits<T>::vec;
template <typename T> using IVec = typename VecTraits<T>::ivec;

template <typename T> inline Vec<T> broadcast(T x) { return Vec<T>{} + x; }
template <typename T> inline Vec<T> load(const T* p) { Vec<T> v; std::memcpy(&v, p, sizeof(v)); return v; }
template <typename T> inline void store(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }

// Sum of the lanes by halving.
template <typename V>
inline auto hsum(V v) {
  constexpr int n = sizeof(V) / sizeof(v[0]);
  using S = std::remove_reference_t<decltype(v[0])>;
  if constexpr (n == 16) {
    typedef S H __attribute__((vector_size(sizeof(V) / 2)));
    return hsum(H(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)));
  } else if constexpr (n == 8) {
    typedef S H __attribute__((vector_size(sizeof(V) / 2)));
    return hsum(H(__builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7)));
  } else if constexpr (n == 4) {
    return (v[0] + v[2]) + (v[1] + v[3]);
  } else {
    static_assert(n == 2, "vectors of 2, 4, 8 or 16 lanes");
    return v[0] + v[1];
  }
}

// Row sums of a square block: rows[0..W) of W lanes each -> the vector whose lane k is the sum
// of rows[k]'s lanes. A tree of W - 1 two-source shuffles and adds (level by level, pairs of
// partial results are folded in half), instead of W separate horizontal sums of log2(W)
// dependent shuffles each: the scan loops store one product vector per step and reduce
// them W steps at a time.
namespace detail {
// Lane q of the fold at level M (M partial rows, W / M lanes each): the first (second) half
// of the source block that output block q / (W / M) folds; blocks >= M / 2 come from y.
template <int W, int M>
constexpr int fold_index(int q, bool second) {
  const int bs = W / M, j = q / bs, o = q % bs;
  const int src = (j % (M / 2)) * 2 * bs + (second ? bs : 0) + o;
  return j < M / 2 ? src : src + W;
}
template <int W, int M, typename V, int... Q>
inline V fold(V x, V y, std::integer_sequence<int, Q...>) {
  return __builtin_shufflevector(x, y, fold_index<W, M>(Q, false)...) +
         __builtin_shufflevector(x, y, fold_index<W, M>(Q, true)...);
}
template <int W, int M, typename V>
inline V partial_row_sums(const V* rows) {
  if constexpr (M == 1) {
    return rows[0];
  } else {
    return fold<W, M>(partial_row_sums<W, M / 2>(rows), partial_row_sums<W, M / 2>(rows + M / 2),
                      std::make_integer_sequence<int, W>());
  }
}
}  // namespace detail

template <typename T>
inline Vec<T> row_sums(const T* rows /* kLanes x kLanes, vector-aligned */) {
  constexpr int W = kLanes<T>;
  Vec<T> v[W];
  std::memcpy(v, rows, sizeof(v));
  return detail::partial_row_sums<W, W>(v);
}

// Lane-wise mask ? a : b, as bit operations: GCC lowers a vector `?:` on 16-lane vectors
// to scalar code when the instruction set is narrower than the vector (AVX2); bitwise
// selects stay vector instructions everywhere.
template <typename T>
inline Vec<T> select(IVec<T> mask, Vec<T> a, Vec<T> b) {
  IVec<T> ia, ib;
  std::memcpy(&ia, &a, sizeof(ia));
  std::memcpy(&ib, &b, sizeof(ib));
  const IVec<T> r = (mask & ia) | (~mask & ib);
  Vec<T> out;
  std::memcpy(&out, &r, sizeof(out));
  return out;
}

// Round to the nearest integer (|x| < 2^22 for float, 2^51 for double), as a float vector
// and in *k as integers: adding 1.5 * 2^(mantissa bits) leaves the rounded value in the
// sum's low mantissa bits, read back by subtracting it again and from the bits.
template <typename T>
inline Vec<T> round_nearest(Vec<T> x, IVec<T>* k) {
  constexpr T kMagic = std::is_same<T, float>::value ? T(12582912.0) : T(6755399441055744.0);
  const Vec<T> magic = broadcast(kMagic), t = x + magic;
  IVec<T> t_bits, magic_bits;
  std::memcpy(&t_bits, &t, sizeof(t_bits));
  std::memcpy(&magic_bits, &magic, sizeof(magic_bits));
  *k = t_bits - magic_bits;
  return t - magic;
}

namespace detail {
constexpr float kExpHiF = 88.3762626647949f, kExpLoF = -87.3365447504f;
constexpr double kExpHiD = 709.436139303, kExpLoD = -708.39641853226408;

// exp(x) for x already within [kExpLo, kExpHi]: exp(x) = 2^k exp(r), k = round(x / ln2).
inline Vec<float> vexp_in_range(Vec<float> xc) {
  using V = Vec<float>;
  using I = IVec<float>;
  I ki;
  const V kf = round_nearest<float>(xc * 1.44269504088896341f, &ki);  // k = round(x / ln2)
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
  return e * scale;
}

inline Vec<double> vexp_in_range(Vec<double> xc) {
  using V = Vec<double>;
  using I = IVec<double>;
  I ki;
  const V kf = round_nearest<double>(xc * 1.4426950408889634073599, &ki);  // k = round(x / ln2)
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
  return e * scale;
}
}  // namespace detail

inline Vec<float> vexp(Vec<float> x) {
  const Vec<float> hi = broadcast(detail::kExpHiF), lo = broadcast(detail::kExpLoF);
  Vec<float> xc = select<float>(x > hi, hi, x);
  xc = select<float>(xc < lo, lo, xc);
  return select<float>(x < lo, broadcast(0.0f), detail::vexp_in_range(xc));
}

inline Vec<double> vexp(Vec<double> x) {
  const Vec<double> hi = broadcast(detail::kExpHiD), lo = broadcast(detail::kExpLoD);
  Vec<double> xc = select<double>(x > hi, hi, x);
  xc = select<double>(xc < lo, lo, xc);
  return select<double>(x < lo, broadcast(0.0), detail::vexp_in_range(xc));
}

// exp(x) for x <= 0 (the scan's exp(dt A) when A <= 0 and dt >= 0), two selects fewer: no
// upper clamp, and below the lower bound the smallest normal number (1.2e-38 in float,
// 2.2e-308 in double) instead of 0.
inline Vec<float> vexp_nonpositive(Vec<float> x) {
  const Vec<float> lo = broadcast(detail::kExpLoF);
  return detail::vexp_in_range(select<float>(x < lo, lo, x));
}
inline Vec<double> vexp_nonpositive(Vec<double> x) {
  const Vec<double> lo = broadcast(detail::kExpLoD);
  return detail::vexp_in_range(select<double>(x < lo, lo, x));
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
  m = select<float>(small, m + m - 1.0f, m - 1.0f);
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
  V ax = select<float>(x < 0.0f, -x, x);
  V t = vexp(-ax);
  V w = t + 1.0f;
  V d = w - 1.0f;
  const IVec<float> exact = d == 0.0f;
  V l1p = select<float>(exact, t, vlog_1_2(w) * (t / select<float>(exact, broadcast(1.0f), d)));
  return select<float>(x > 0.0f, x, broadcast(0.0f)) + l1p;
}

inline Vec<double> vsoftplus(Vec<double> x) {
  Vec<double> r;
  for (int k = 0; k < kLanes<double>; ++k) r[k] = x[k] > 0 ? x[k] + std::log1p(std::exp(-x[k])) : std::log1p(std::exp(x[k]));
  return r;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
