// float16 / bfloat16 <-> float32 for the CPU scan's reduced-precision inputs, framework-free
// and branch-free (selects only), so that the row loops of each instruction set's TU
// vectorise them. Round to nearest even on the way down; NaN stays NaN, overflow gives inf.
#pragma once
#include <cstdint>
#include <cstring>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
// Internal linkage: each instruction set's TU keeps its own copy (compiled for that ISA),
// never one picked by the linker for all.
namespace {

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// float16: sign 1, exponent 5 (bias 15), mantissa 10.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // Normal: the bits shifted into float32's fields read as 2^(e-127) 1.m; times 2^112 is
  // 2^(e-15) 1.m. Subnormal (e = 0): m 2^-24, from the integer m. Inf / NaN: e = 31.
  const float normal = bits_to_float(em << 13) * 0x1p112f;
  const float subnormal = static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f;
  const uint32_t special = (em << 13) | 0x7f800000u;
  uint32_t bits = em < 0x0400u ? float_to_bits(subnormal) : float_to_bits(normal);
  bits = em >= 0x7c00u ? special : bits;
  return bits_to_float(bits | sign);
}

inline uint16_t float_to_half(float f) {
  const uint32_t x = float_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;  // |f|
  // Normal half (|f| >= 2^-14): rebias the exponent (127 -> 15) and drop 13 mantissa bits,
  // rounding to nearest even; a carry out of the mantissa bumps the exponent, as it should.
  const uint32_t rebiased = a - (112u << 23);
  const uint32_t normal = (rebiased + 0x0fffu + ((rebiased >> 13) & 1u)) >> 13;
  // Subnormal half (|f| < 2^-14): the integer nearest |f| 2^24 (adding 2^23 rounds a float
  // below 2^23 to an integer, nearest even, in the default rounding mode; it lands in the
  // low mantissa bits). Rounding up to 0x400 gives the smallest normal, which is right.
  const uint32_t subnormal = float_to_bits(bits_to_float(a) * 0x1p24f + 0x1p23f) - 0x4b000000u;
  uint32_t h = a < 0x38800000u ? subnormal : normal;
  h = a >= 0x477ff000u ? 0x7c00u : h;  // >= 65520 rounds to inf (65504 is the largest half)
  h = a > 0x7f800000u ? 0x7e00u : h;   // NaN
  return static_cast<uint16_t>(h | sign);
}

// bfloat16: the top half of a float32.
inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  const uint32_t x = float_to_bits(f);
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;  // nearest even; overflow gives inf
  const bool nan = (x & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(nan ? ((x >> 16) | 0x0040u) : rounded);  // NaN kept quiet
}

inline bool is_reduced(ScanDType t) { return t == ScanDType::kFloat16 || t == ScanDType::kBFloat16; }

// n elements of a float16 / bfloat16 row into float32, and back. Where the TU is compiled
// with F16C (the AVX2 and AVX-512 loops), float16 goes through the hardware conversions,
// 8 at a time (round to nearest even, as above).
inline void row_to_float(const uint16_t* src, float* dst, int64_t n, ScanDType type) {
  if (type == ScanDType::kFloat16) {
    int64_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
    for (; i < n; ++i) dst[i] = half_to_float(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
  }
}
inline void row_from_float(const float* src, uint16_t* dst, int64_t n, ScanDType type) {
  if (type == ScanDType::kFloat16) {
    int64_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; ++i) dst[i] = float_to_half(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
  }
}

}  // namespace
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
