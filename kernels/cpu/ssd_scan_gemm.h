// The matrix products of the chunked SSD scan (ssd_scan_chunked.h), compiled per instruction
// set with the rest of the scan (MAMBA_LRP_CPU_ISA): a register-blocked product
//   c[r][j] = beta c[r][j] + scale[j] Σ_{k0(j) <= k < k1(j)} a[r lda + k] b[k ldb + j]
// for r < rows and j < cols, cols a multiple of the vector width (the scan pads its scratch
// to it). A tile of R rows × NV vectors of c stays in registers over the whole k loop; each
// step loads NV vectors of b and broadcasts R scalars of a from memory, so one load of b
// serves R rows. The k range may depend on the tile's columns (triangular matrices: the
// part known to be zero is skipped), in steps of the tile width.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/cpu/simd_math.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace ssd {

// Registers: 32 vector registers with AVX-512, 16 otherwise; a tile keeps about three
// quarters of them as accumulators, the rest hold b's vectors and a broadcast.
constexpr int kTileVectors = kVecBytes == 64 ? 4 : 2;
constexpr int kTileAccumulators = kVecBytes == 64 ? 24 : 12;
// The most bytes of b one pass over the rows reads (a third of a 48 KiB first-level cache).
constexpr int64_t kPanelBytes = 16384;

// How a product ends: c = acc (beta 0: c is not read), or c = beta c + acc; with `scale`,
// acc is first multiplied by scale[j] (a vector of column weights).
template <typename T>
struct Epilogue {
  T beta = 0;
  const T* scale = nullptr;
};

template <typename T, int R, int NV>
inline void gemm_tile(const T* __restrict a, int64_t lda, const T* __restrict b, int64_t ldb, int64_t K,
                      T* __restrict c, int64_t ldc, Epilogue<T> e) {
  using V = Vec<T>;
  constexpr int64_t W = kLanes<T>;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = load(b + k * ldb + v * W);
    for (int r = 0; r < R; ++r) {
      // scalar * vector: a broadcast the multiply-add takes from memory itself (V{} + a
      // would add a scalar 0 first, one more instruction on the multiply-add ports).
      const T ar = a[r * lda + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
  }
  for (int v = 0; v < NV; ++v) {
    const V s = e.scale ? load(e.scale + v * W) : broadcast(T(1));
    const V beta = broadcast(e.beta);
    for (int r = 0; r < R; ++r) {
      V out = e.scale ? acc[r][v] * s : acc[r][v];
      if (e.beta != T(0)) out += beta * load(c + r * ldc + v * W);
      store(c + r * ldc + v * W, out);
    }
  }
}

// All rows of one column tile of NV vectors: blocks of R rows (the most that fit the
// registers), the remainder in blocks of 8, 4, 2, 1.
template <typename T, int NV>
inline void gemm_column_tile(int64_t rows, const T* a, int64_t lda, const T* b, int64_t ldb, int64_t K, T* c,
                             int64_t ldc, Epilogue<T> e) {
  constexpr int R = kTileAccumulators / NV;
  int64_t r = 0;
  auto block = [&](auto rows_in_block) {
    constexpr int RB = decltype(rows_in_block)::value;
    for (; r + RB <= rows; r += RB) gemm_tile<T, RB, NV>(a + r * lda, lda, b, ldb, K, c + r * ldc, ldc, e);
  };
  block(std::integral_constant<int, R>{});
  if constexpr (R > 8) block(std::integral_constant<int, 8>{});
  if constexpr (R > 4) block(std::integral_constant<int, 4>{});
  block(std::integral_constant<int, 2>{});
  block(std::integral_constant<int, 1>{});
}

// The product over all rows and columns (cols % kLanes<T> == 0). k_range(j0, j1) gives the
// [k0, k1) of the columns [j0, j1); tiles are at most max_vectors vectors wide (narrower
// tiles skip more of a triangular b).
template <typename T, typename KRange>
void gemm(int64_t rows, int64_t cols, const T* a, int64_t lda, const T* b, int64_t ldb, KRange k_range, T* c,
          int64_t ldc, Epilogue<T> e, int max_vectors = kTileVectors) {
  constexpr int64_t W = kLanes<T>;
  const int64_t vectors = cols / W;
  for (int64_t v0 = 0; v0 < vectors;) {
    const int nv = static_cast<int>(std::min<int64_t>({vectors - v0, max_vectors, kTileVectors}));
    const int64_t j0 = v0 * W;
    const std::pair<int64_t, int64_t> kr = k_range(j0, j0 + nv * W);
    const int64_t k0 = kr.first, K = std::max<int64_t>(kr.second - kr.first, 0);
    Epilogue<T> ej = e;
    if (ej.scale) ej.scale += j0;
    const T* ak = a + k0;
    const T* bk = b + k0 * ldb + j0;
    T* cj = c + j0;
    // The k range in blocks whose panel of b (kc × the tile's width) fits the first-level
    // cache beside the rows of a and c: the first block ends as asked, the others add on.
    const int64_t kc = std::max<int64_t>(1, kPanelBytes / (nv * W * static_cast<int64_t>(sizeof(T))));
    for (int64_t kb = 0; kb < K || kb == 0; kb += kc) {
      const int64_t kn = std::min(kc, K - kb);
      Epilogue<T> ek = ej;
      if (kb > 0) ek.beta = 1;
      const T* akb = ak + kb;
      const T* bkb = bk + kb * ldb;
      switch (nv) {
        case 1: gemm_column_tile<T, 1>(rows, akb, lda, bkb, ldb, kn, cj, ldc, ek); break;
        case 2: gemm_column_tile<T, 2>(rows, akb, lda, bkb, ldb, kn, cj, ldc, ek); break;
        case 3:
          if constexpr (kTileVectors >= 3) gemm_column_tile<T, 3>(rows, akb, lda, bkb, ldb, kn, cj, ldc, ek);
          break;
        default:
          if constexpr (kTileVectors >= 4) gemm_column_tile<T, 4>(rows, akb, lda, bkb, ldb, kn, cj, ldc, ek);
          break;
      }
    }
    v0 += nv;
  }
}

// The whole k range [0, K) for every column.
struct FullK {
  int64_t K;
  std::pair<int64_t, int64_t> operator()(int64_t, int64_t) const { return {0, K}; }
};

}  // namespace ssd
}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
