// Shared pieces of the CUDA selective-scan kernels: dtype conversion, the math helpers,
// and the launch geometry (how (batch, dim, dstate) map onto blocks and threads).
//
// Work split (all three kernels):
//   * one block = one batch row b, one group g, and `rows` consecutive dims of that group
//     (B and C are shared by the dims of a group, so a block stages them once per chunk);
//   * one dim = R lanes (R a power of two <= 32, inside one warp); lane l holds the states
//     n = l, l + R, ..., l + (S-1) R in registers (S = 1 for dstate <= 32, else 8);
//   * the sequence is walked in chunks of T steps (T a multiple of 8). Per chunk the block
//     stages u/dt/gates of its dims and B, C of its group in shared memory (coalesced
//     loads, converted to float32), each lane runs the recurrence over the chunk, and the
//     per-step sums over states are reduced across the R lanes with warp shuffles, 8 steps
//     at a time so that the shuffles of different steps overlap.
//   * Steps past the end of the sequence are staged as dt = 0, u = 0, B = C = 0, gy = 0:
//     exp(0 A) = 1 leaves the state (and the reverse carry) unchanged, so the last chunk
//     needs no special case. States n >= dstate get A = 0, B = C = 0 and stay 0.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/selective_scan_params.h"

namespace mamba_lrp {
namespace kernels {
namespace cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxLanes = 32;
constexpr int kUnroll = 8;                   // steps whose lane reductions are interleaved
constexpr size_t kSmemLimit = 48 * 1024;     // no opt-in needed on any architecture
constexpr int kFwdThreads = 128;             // target block size of forward / MambaLRP kernels
constexpr int kExactThreads = 64;            // target block size of the exact backward

// ---- dtype conversion ------------------------------------------------------------------
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// ---- math ------------------------------------------------------------------------------
__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + __expf(-x)); }
// softplus(x) = max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|.
__device__ __forceinline__ float softplusf_(float x) { return fmaxf(x, 0.0f) + log1pf(__expf(-fabsf(x))); }

// Sum over the R lanes of one dim (lanes l ^ off stay inside the aligned R-lane segment).
template <int N>
__device__ __forceinline__ void lane_reduce(float (&v)[N], int R, unsigned mask) {
  for (int off = R >> 1; off > 0; off >>= 1) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] += __shfl_xor_sync(mask, v[i], off);
  }
}

// ---- geometry --------------------------------------------------------------------------
enum class KernelKind { kForward, kLRP, kExact };

struct Geometry {
  int S = 1;              // states per lane (the template parameter)
  int R = 1;              // lanes per dim
  int npad = 1;           // R * S states per dim, dstate rounded up
  int rows = 1;           // dims per block
  int T = 8;              // chunk length (steps), multiple of kUnroll
  int64_t tiles = 1;      // blocks per (batch, group)
  int64_t nchunks = 0;    // ceil(seqlen / T)
  int64_t blocks = 0;     // grid size
  size_t smem = 0;        // dynamic shared memory, bytes
  int threads() const { return rows * R; }
};

inline int states_per_lane(int64_t dstate) { return dstate <= kMaxLanes ? 1 : 8; }

inline int next_pow2(int64_t x) {
  int r = 1;
  while (r < x) r <<= 1;
  return r;
}

// Shared-memory floats of one block: per-state arrays (S) are npad x (T+1), per-dim arrays
// (P) rows x (T+1); the exact backward adds the recomputed states of each dim and 2 sums.
inline size_t smem_floats(KernelKind kind, int npad, int rows, int T) {
  const size_t tp = static_cast<size_t>(T) + 1;  // +1: rows of T+1 avoid bank conflicts
  switch (kind) {
    case KernelKind::kForward: return (2 * npad + 3 * rows) * tp;          // B C | dt u y
    case KernelKind::kLRP: return (2 * npad + 3 * rows) * tp;              // B C | dt gy acc
    case KernelKind::kExact:                                               // B C dB dC | dt dsp u gy bg gah | h
      return (4 * static_cast<size_t>(npad) + 6 * rows + static_cast<size_t>(rows) * npad) * tp + 2 * rows;
  }
  return 0;
}

// forced_T > 0: use exactly that chunk length (the exact backward's checkpoint pass must
// use the chunks of the exact kernel), shrinking the block instead.
inline Geometry make_geometry(KernelKind kind, const SelectiveScanParams& p, int forced_T = 0) {
  Geometry g;
  g.S = states_per_lane(p.dstate);
  g.R = next_pow2((p.dstate + g.S - 1) / g.S);
  g.npad = g.R * g.S;
  const int target = kind == KernelKind::kExact ? kExactThreads : kFwdThreads;
  const int max_rows = kind == KernelKind::kExact ? 8 : 16;
  g.rows = target / g.R;
  if (g.rows < 1) g.rows = 1;
  if (g.rows > max_rows) g.rows = max_rows;
  g.T = forced_T > 0 ? forced_T : 64;
  auto fits = [&] { return smem_floats(kind, g.npad, g.rows, g.T) * sizeof(float) <= kSmemLimit; };
  while (!fits()) {
    if (forced_T == 0 && g.T > 16) g.T /= 2;
    else if (g.rows > 1) g.rows /= 2;
    else if (forced_T == 0 && g.T > kUnroll) g.T /= 2;
    else throw std::invalid_argument("selective_scan CUDA kernel: dstate too large for shared memory");
  }
  g.smem = smem_floats(kind, g.npad, g.rows, g.T) * sizeof(float);
  const int64_t per_group = p.dim / p.n_groups;
  g.tiles = (per_group + g.rows - 1) / g.rows;
  g.nchunks = (p.seqlen + g.T - 1) / g.T;
  g.blocks = p.batch * p.n_groups * g.tiles;
  if (g.blocks > 0x7fffffffLL)
    throw std::invalid_argument("selective_scan CUDA kernel: batch * dim too large for one grid");
  return g;
}

// Where a block is: batch b, group g, and its dims [d_first, d_first + nrows).
struct BlockPos {
  int64_t b, g, d_first;
  int nrows;
};

__device__ __forceinline__ BlockPos block_pos(const SelectiveScanParams& p, const Geometry& geo) {
  BlockPos pos;
  const int64_t bid = blockIdx.x;
  const int64_t tile = bid % geo.tiles;
  const int64_t bg = bid / geo.tiles;
  pos.g = bg % p.n_groups;
  pos.b = bg / p.n_groups;
  const int64_t per_group = p.dim / p.n_groups;
  pos.d_first = pos.g * per_group + tile * geo.rows;
  const int64_t left = per_group - tile * geo.rows;
  pos.nrows = left < geo.rows ? static_cast<int>(left) : geo.rows;
  return pos;
}

// Shuffle mask: the whole warp, or the threads of a block smaller than a warp.
__device__ __forceinline__ unsigned lane_mask() {
  return blockDim.x >= 32 ? 0xffffffffu : ((1u << blockDim.x) - 1u);
}

// Stage B and C of steps [t0, t0 + T) of one (batch, group) as float32 [npad][T+1].
template <typename T>
__device__ __forceinline__ void stage_bc(const SelectiveScanParams& p, const Geometry& geo, const BlockPos& pos,
                                         int64_t t0, int steps, float* sB, float* sC) {
  const int tp = geo.T + 1;
  const T* Bg = static_cast<const T*>(p.B) + pos.b * p.B_batch_stride + pos.g * p.B_group_stride + t0;
  const T* Cg = static_cast<const T*>(p.C) + pos.b * p.C_batch_stride + pos.g * p.C_group_stride + t0;
  const int total = geo.npad * geo.T;
  for (int i = threadIdx.x; i < total; i += blockDim.x) {
    const int n = i / geo.T, k = i - n * geo.T;
    float bv = 0.0f, cv = 0.0f;
    if (n < p.dstate && k < steps) {
      bv = to_f(Bg[n * p.B_dstate_stride + k]);
      cv = to_f(Cg[n * p.C_dstate_stride + k]);
    }
    sB[n * tp + k] = bv;
    sC[n * tp + k] = cv;
  }
}

// dt of one step: delta + bias, through softplus if asked; dsp = d dt / d(delta + bias).
__device__ __forceinline__ float step_dt(const SelectiveScanParams& p, float delta, float bias, float* dsp) {
  const float raw = delta + bias;
  if (!p.delta_softplus) {
    if (dsp) *dsp = 1.0f;
    return raw;
  }
  if (dsp) *dsp = sigmoidf_(raw);
  return softplusf_(raw);
}

// Kernel launch. A seam for tests that run the kernels' code on the host (a macro defined
// before this header replaces it); nvcc builds always use the triple-chevron launch.
#ifndef MAMBA_LRP_CUDA_LAUNCH
#define MAMBA_LRP_CUDA_LAUNCH(kernel, blocks, threads, smem, stream, ...) \
  kernel<<<(blocks), (threads), (smem), (stream)>>>(__VA_ARGS__)
#endif

// Launch templates, instantiated once per input dtype in selective_scan_{fp32,fp16,bf16}.cu.
template <typename T>
cudaError_t run_fwd(const SelectiveScanParams& p, cudaStream_t stream);
template <typename T>
cudaError_t run_bwd(const SelectiveScanBwdParams& p, void* workspace, cudaStream_t stream);

// Workspace layout of the exact backward (bytes, each part 256-byte aligned).
struct BwdWorkspace {
  size_t ckpt_offset = 0, ckpt_bytes = 0;  // float (batch, dim, nchunks, npad): state before each chunk
  size_t dbc_offset = 0, dbc_bytes = 0;    // float (2, batch, groups, dstate, seqlen): dB, dC sums (non-fp32 inputs)
  size_t total = 0;
};

inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

inline BwdWorkspace bwd_workspace_layout(const SelectiveScanBwdParams& p) {
  BwdWorkspace w;
  if (p.rule != ScanRule::kExact) return w;
  const Geometry geo = make_geometry(KernelKind::kExact, p);
  w.ckpt_bytes = static_cast<size_t>(p.batch) * p.dim * geo.nchunks * geo.npad * sizeof(float);
  if (p.input_type != ScanDType::kFloat32)
    w.dbc_bytes = 2 * static_cast<size_t>(p.batch) * p.n_groups * p.dstate * p.seqlen * sizeof(float);
  w.ckpt_offset = 0;
  w.dbc_offset = align256(w.ckpt_bytes);
  w.total = w.dbc_offset + align256(w.dbc_bytes);
  return w;
}

}  // namespace cuda
}  // namespace kernels
}  // namespace mamba_lrp
