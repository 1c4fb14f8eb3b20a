// Selective-scan backward on CUDA, both rules, with the work split of
// selective_scan_common.cuh.
//
// Gate (when z is given), from the output gradient go and the saved pre-gate y:
//   exact:    gy = go silu(z),        dz = go y silu'(z) = go y s (1 + z (1 - s)),  s = sigmoid(z)
//   MambaLRP: gy = go silu(z) / 2,    dz = go y s / 2  (half to each factor; SiLU identity on z)
//
// MambaLRP (exp(dt A), dt B and C constant; y linear in u): the reverse linear scan
//   g_t = exp(dt_{t+1} A) g_{t+1} + gy_t C_t ;  du_t = dt_t B_t . g_t + D gy_t
// kept as carry_t = exp(dt_t A) g_t in registers, chunk by chunk from the end. Every
// output element is written by exactly one thread from a fixed-order sum: deterministic.
//
// Exact: the same reverse scan of g, plus, with h_t the state after step t,
//   dC_t += gy_t h_t            dB_t += g_t dt_t u_t        (summed over the dims of a group)
//   ddt_t = sum_n g_t exp(dt_t A) h_{t-1} A + u_t (B_t . g_t)
//   dA    += g_t exp(dt_t A) h_{t-1} dt_t                    (summed over batch and steps)
//   ddelta = ddt * softplus'(delta + bias);  ddelta_bias = sum ddelta;  dD = sum gy u
// h_{t-1}, h_t come from the chunk's states, recomputed into shared memory from the
// checkpoint written by the forward kernel's checkpoint pass.
#pragma once
#include "kernels/cuda/selective_scan_common.cuh"
#include "kernels/cuda/selective_scan_fwd.cuh"

namespace mamba_lrp {
namespace kernels {
namespace cuda {

// Row pointers of one batch row for the gate and the output gradient.
template <typename T>
struct GateIO {
  const T* gout;
  const T* z;      // may be null
  const T* out_y;  // set when z is
  T* dz;           // set when z is
};

template <typename T>
__device__ __forceinline__ GateIO<T> gate_io(const SelectiveScanBwdParams& p, int64_t b) {
  GateIO<T> io;
  io.gout = static_cast<const T*>(p.grad_out) + b * p.grad_out_batch_stride;
  io.z = p.z ? static_cast<const T*>(p.z) + b * p.z_batch_stride : nullptr;
  io.out_y = p.out_y ? static_cast<const T*>(p.out_y) + b * p.out_y_batch_stride : nullptr;
  io.dz = p.dz ? static_cast<T*>(p.dz) + b * p.dz_batch_stride : nullptr;
  return io;
}

// gy of one step of dim dd; writes dz.
template <typename T>
__device__ __forceinline__ float gate_step(const SelectiveScanBwdParams& p, const GateIO<T>& io, int64_t dd, int64_t t,
                                           bool lrp) {
  const float go = to_f(io.gout[dd * p.grad_out_dim_stride + t]);
  if (!io.z) return go;
  const float zz = to_f(io.z[dd * p.z_dim_stride + t]);
  const float yy = to_f(io.out_y[dd * p.out_y_dim_stride + t]);
  const float s = sigmoidf_(zz);
  float gy, dz;
  if (lrp) {
    gy = 0.5f * go * zz * s;
    dz = 0.5f * go * yy * s;
  } else {
    gy = go * zz * s;
    dz = go * yy * s * (1.0f + zz * (1.0f - s));
  }
  if (io.dz) io.dz[dd * p.dz_dim_stride + t] = from_f<T>(dz);
  return gy;
}

template <int S>
__device__ __forceinline__ void init_carry(const SelectiveScanBwdParams& p, const BlockPos& pos, int64_t d, bool valid,
                                           int l, int R, float (&carry)[S]) {
  const float* gls = static_cast<const float*>(p.grad_last_state);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = l + s * R;
    carry[s] = (gls && valid && n < p.dstate) ? gls[(pos.b * p.dim + d) * p.dstate + n] : 0.0f;
  }
}

// ---- MambaLRP -------------------------------------------------------------------------
template <typename T, int S>
__global__ void __launch_bounds__(kFwdThreads) scan_bwd_lrp_kernel(const SelectiveScanBwdParams p, const Geometry geo) {
  extern __shared__ float smem[];
  const int R = geo.R, rows = geo.rows, tp = geo.T + 1, npad = geo.npad;
  float* sB = smem;
  float* sC = sB + npad * tp;
  float* sdt = sC + npad * tp;
  float* sg = sdt + rows * tp;
  float* sacc = sg + rows * tp;

  const BlockPos pos = block_pos(p, geo);
  const int r = threadIdx.x / R, l = threadIdx.x % R;
  const bool valid = r < pos.nrows;
  const int64_t d = pos.d_first + r;
  const unsigned mask = lane_mask();

  const T* delta = static_cast<const T*>(p.delta) + pos.b * p.delta_batch_stride;
  const float* Dw = static_cast<const float*>(p.D);
  const float* bias = static_cast<const float*>(p.delta_bias);
  T* du = static_cast<T*>(p.du) + pos.b * p.du_batch_stride;
  const GateIO<T> io = gate_io<T>(p, pos.b);

  float a2[S], carry[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = l + s * R;
    a2[s] = (valid && n < p.dstate)
                ? static_cast<const float*>(p.A)[d * p.A_dim_stride + n * p.A_dstate_stride] * kLog2e
                : 0.0f;
  }
  init_carry<S>(p, pos, d, valid, l, R, carry);

  for (int64_t c = geo.nchunks - 1; c >= 0; --c) {
    const int64_t t0 = c * geo.T;
    const int steps = static_cast<int>(p.seqlen - t0 < geo.T ? p.seqlen - t0 : geo.T);
    for (int i = threadIdx.x; i < rows * geo.T; i += blockDim.x) {
      const int rr = i / geo.T, k = i - rr * geo.T;
      float dt = 0.0f, gy = 0.0f;
      if (rr < pos.nrows && k < steps) {
        const int64_t dd = pos.d_first + rr, t = t0 + k;
        dt = step_dt(p, to_f(delta[dd * p.delta_dim_stride + t]), bias ? bias[dd] : 0.0f, nullptr);
        gy = gate_step<T>(p, io, dd, t, /*lrp=*/true);
      }
      sdt[rr * tp + k] = dt;
      sg[rr * tp + k] = gy;
    }
    stage_bc<T>(p, geo, pos, t0, steps, sB, sC);
    __syncthreads();

    const float* sdt_r = sdt + r * tp;
    const float* sg_r = sg + r * tp;
    for (int k0 = geo.T - kUnroll; k0 >= 0; k0 -= kUnroll) {
      float acc[kUnroll];
#pragma unroll
      for (int kk = kUnroll - 1; kk >= 0; --kk) {
        const int k = k0 + kk;
        const float dt = sdt_r[k], gy = sg_r[k];
        float a = 0.0f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const int n = l + s * R;
          const float g = carry[s] + sC[n * tp + k] * gy;
          a += sB[n * tp + k] * g;
          carry[s] = exp2f(dt * a2[s]) * g;
        }
        acc[kk] = a;
      }
      lane_reduce(acc, R, mask);
      if (l == 0) {
#pragma unroll
        for (int kk = 0; kk < kUnroll; ++kk) sacc[r * tp + k0 + kk] = acc[kk];
      }
    }
    __syncthreads();

    for (int i = threadIdx.x; i < rows * geo.T; i += blockDim.x) {
      const int rr = i / geo.T, k = i - rr * geo.T;
      if (rr >= pos.nrows || k >= steps) continue;
      const int64_t dd = pos.d_first + rr;
      const float v = sdt[rr * tp + k] * sacc[rr * tp + k] + (Dw ? Dw[dd] : 0.0f) * sg[rr * tp + k];
      du[dd * p.du_dim_stride + t0 + k] = from_f<T>(v);
    }
    __syncthreads();
  }
}

// ---- exact ----------------------------------------------------------------------------
// dB, dC sums go to dbc (float (2, batch, groups, dstate, seqlen), zeroed; for float32
// inputs dbc points at p.dB and dbc_C at p.dC).
template <typename T, int S>
__global__ void __launch_bounds__(kExactThreads) scan_bwd_exact_kernel(const SelectiveScanBwdParams p, const Geometry geo,
                                                                         const float* __restrict__ ckpt,
                                                                         float* __restrict__ dB_sum,
                                                                         float* __restrict__ dC_sum) {
  extern __shared__ float smem[];
  const int R = geo.R, rows = geo.rows, tp = geo.T + 1, npad = geo.npad;
  float* sB = smem;
  float* sC = sB + npad * tp;
  float* sdB = sC + npad * tp;
  float* sdC = sdB + npad * tp;
  float* sdt = sdC + npad * tp;
  float* sdsp = sdt + rows * tp;
  float* su = sdsp + rows * tp;
  float* sg = su + rows * tp;
  float* sbg = sg + rows * tp;
  float* sgah = sbg + rows * tp;
  float* hist = sgah + rows * tp;                  // [rows][npad][T+1]: state before step k at k
  float* srow = hist + rows * npad * tp;           // [rows][2]: sum ddelta, sum gy u

  const BlockPos pos = block_pos(p, geo);
  const int r = threadIdx.x / R, l = threadIdx.x % R;
  const bool valid = r < pos.nrows;
  const int64_t d = pos.d_first + r;
  const unsigned mask = lane_mask();

  const T* u = static_cast<const T*>(p.u) + pos.b * p.u_batch_stride;
  const T* delta = static_cast<const T*>(p.delta) + pos.b * p.delta_batch_stride;
  const float* Dw = static_cast<const float*>(p.D);
  const float* bias = static_cast<const float*>(p.delta_bias);
  T* du = static_cast<T*>(p.du) + pos.b * p.du_batch_stride;
  T* ddelta = p.ddelta ? static_cast<T*>(p.ddelta) + pos.b * p.ddelta_batch_stride : nullptr;
  const GateIO<T> io = gate_io<T>(p, pos.b);
  const int64_t bc_base = (pos.b * p.n_groups + pos.g) * p.dstate * p.seqlen;  // dense (batch, groups, dstate, seqlen)

  float a2[S], an[S], carry[S], h[S], dA[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = l + s * R;
    an[s] = (valid && n < p.dstate) ? static_cast<const float*>(p.A)[d * p.A_dim_stride + n * p.A_dstate_stride] : 0.0f;
    a2[s] = an[s] * kLog2e;
    dA[s] = 0.0f;
  }
  init_carry<S>(p, pos, d, valid, l, R, carry);
  for (int i = threadIdx.x; i < 2 * rows; i += blockDim.x) srow[i] = 0.0f;
  float* hrow = hist + r * npad * tp;

  for (int64_t c = geo.nchunks - 1; c >= 0; --c) {
    const int64_t t0 = c * geo.T;
    const int steps = static_cast<int>(p.seqlen - t0 < geo.T ? p.seqlen - t0 : geo.T);
#pragma unroll
    for (int s = 0; s < S; ++s)
      h[s] = valid ? ckpt[((pos.b * p.dim + d) * geo.nchunks + c) * npad + l + s * R] : 0.0f;

    for (int i = threadIdx.x; i < rows * geo.T; i += blockDim.x) {
      const int rr = i / geo.T, k = i - rr * geo.T;
      float dt = 0.0f, dsp = 0.0f, uu = 0.0f, gy = 0.0f;
      if (rr < pos.nrows && k < steps) {
        const int64_t dd = pos.d_first + rr, t = t0 + k;
        dt = step_dt(p, to_f(delta[dd * p.delta_dim_stride + t]), bias ? bias[dd] : 0.0f, &dsp);
        uu = to_f(u[dd * p.u_dim_stride + t]);
        gy = gate_step<T>(p, io, dd, t, /*lrp=*/false);
      }
      sdt[rr * tp + k] = dt;
      sdsp[rr * tp + k] = dsp;
      su[rr * tp + k] = uu;
      sg[rr * tp + k] = gy;
    }
    stage_bc<T>(p, geo, pos, t0, steps, sB, sC);
    for (int i = threadIdx.x; i < npad * tp; i += blockDim.x) {
      sdB[i] = 0.0f;
      sdC[i] = 0.0f;
    }
    __syncthreads();

    const float* sdt_r = sdt + r * tp;
    const float* su_r = su + r * tp;
    const float* sg_r = sg + r * tp;
    // The chunk's states: hrow[n][k] = state before step k, hrow[n][T] = after the chunk.
    for (int k = 0; k < geo.T; ++k) {
      const float dt = sdt_r[k];
      const float dtu = dt * su_r[k];
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const int n = l + s * R;
        hrow[n * tp + k] = h[s];
        h[s] = exp2f(dt * a2[s]) * h[s] + sB[n * tp + k] * dtu;
      }
    }
#pragma unroll
    for (int s = 0; s < S; ++s) hrow[(l + s * R) * tp + geo.T] = h[s];

    for (int k0 = geo.T - kUnroll; k0 >= 0; k0 -= kUnroll) {
      float bg[kUnroll], gah[kUnroll];
#pragma unroll
      for (int kk = kUnroll - 1; kk >= 0; --kk) {
        const int k = k0 + kk;
        const float dt = sdt_r[k], gy = sg_r[k];
        const float dtu = dt * su_r[k];
        float sum_bg = 0.0f, sum_gah = 0.0f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const int n = l + s * R;
          const float g = carry[s] + sC[n * tp + k] * gy;
          if (valid) {
            atomicAdd(&sdC[n * tp + k], hrow[n * tp + k + 1] * gy);
            atomicAdd(&sdB[n * tp + k], g * dtu);
          }
          sum_bg += sB[n * tp + k] * g;
          const float e = exp2f(dt * a2[s]);
          const float geh = g * e * hrow[n * tp + k];
          sum_gah += geh * an[s];
          dA[s] += geh * dt;
          carry[s] = e * g;
        }
        bg[kk] = sum_bg;
        gah[kk] = sum_gah;
      }
      lane_reduce(bg, R, mask);
      lane_reduce(gah, R, mask);
      if (l == 0) {
#pragma unroll
        for (int kk = 0; kk < kUnroll; ++kk) {
          sbg[r * tp + k0 + kk] = bg[kk];
          sgah[r * tp + k0 + kk] = gah[kk];
        }
      }
    }
    __syncthreads();

    for (int i = threadIdx.x; i < rows * geo.T; i += blockDim.x) {
      const int rr = i / geo.T, k = i - rr * geo.T;
      if (rr >= pos.nrows || k >= steps) continue;
      const int64_t dd = pos.d_first + rr, t = t0 + k;
      const int j = rr * tp + k;
      const float dt = sdt[j], uu = su[j], gy = sg[j], bgv = sbg[j];
      du[dd * p.du_dim_stride + t] = from_f<T>(dt * bgv + (Dw ? Dw[dd] : 0.0f) * gy);
      const float dd_delta = (sgah[j] + uu * bgv) * sdsp[j];
      if (ddelta) ddelta[dd * p.ddelta_dim_stride + t] = from_f<T>(dd_delta);
      atomicAdd(&srow[2 * rr], dd_delta);
      atomicAdd(&srow[2 * rr + 1], gy * uu);
    }
    for (int i = threadIdx.x; i < p.dstate * geo.T; i += blockDim.x) {
      const int n = i / geo.T, k = i - n * geo.T;
      if (k >= steps) continue;
      const int64_t o = bc_base + n * p.seqlen + t0 + k;
      atomicAdd(dB_sum + o, sdB[n * tp + k]);
      atomicAdd(dC_sum + o, sdC[n * tp + k]);
    }
    __syncthreads();
  }
  __syncthreads();  // srow complete (also when the sequence is empty)

  if (valid && p.dA) {
    float* dA_out = static_cast<float*>(p.dA) + d * p.dstate;  // dense (dim, dstate)
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = l + s * R;
      if (n < p.dstate) atomicAdd(dA_out + n, dA[s]);
    }
  }
  if (threadIdx.x < pos.nrows) {
    const int64_t dd = pos.d_first + threadIdx.x;
    if (p.ddelta_bias) atomicAdd(static_cast<float*>(p.ddelta_bias) + dd, srow[2 * threadIdx.x]);
    if (p.dD) atomicAdd(static_cast<float*>(p.dD) + dd, srow[2 * threadIdx.x + 1]);
  }
}

// float sums -> the input dtype (dB, dC of float16 / bfloat16 inputs).
template <typename T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f<T>(src[i]);
}

template <typename T, int S>
cudaError_t launch_bwd_lrp(const SelectiveScanBwdParams& p, const Geometry& geo, cudaStream_t stream) {
  auto* kernel = &scan_bwd_lrp_kernel<T, S>;
  MAMBA_LRP_CUDA_LAUNCH(kernel, static_cast<unsigned>(geo.blocks), geo.threads(), geo.smem, stream, p, geo);
  return cudaGetLastError();
}

template <typename T, int S>
cudaError_t launch_bwd_exact(const SelectiveScanBwdParams& p, const Geometry& geo, const float* ckpt, float* dB_sum,
                             float* dC_sum, cudaStream_t stream) {
  auto* kernel = &scan_bwd_exact_kernel<T, S>;
  MAMBA_LRP_CUDA_LAUNCH(kernel, static_cast<unsigned>(geo.blocks), geo.threads(), geo.smem, stream, p, geo, ckpt,
                        dB_sum, dC_sum);
  return cudaGetLastError();
}

template <typename T>
cudaError_t run_bwd(const SelectiveScanBwdParams& p, void* workspace, cudaStream_t stream) {
  if (p.rule == ScanRule::kMambaLRP) {
    const Geometry geo = make_geometry(KernelKind::kLRP, p);
    return geo.S == 1 ? launch_bwd_lrp<T, 1>(p, geo, stream) : launch_bwd_lrp<T, 8>(p, geo, stream);
  }

  const Geometry geo = make_geometry(KernelKind::kExact, p);
  const BwdWorkspace ws = bwd_workspace_layout(p);
  char* base = static_cast<char*>(workspace);
  float* ckpt = reinterpret_cast<float*>(base + ws.ckpt_offset);
  const size_t bc_elems = static_cast<size_t>(p.batch) * p.n_groups * p.dstate * p.seqlen;
  float* dB_sum;
  float* dC_sum;
  if (p.input_type == ScanDType::kFloat32) {
    dB_sum = static_cast<float*>(p.dB);
    dC_sum = static_cast<float*>(p.dC);
  } else {
    dB_sum = reinterpret_cast<float*>(base + ws.dbc_offset);
    dC_sum = dB_sum + bc_elems;
  }
  auto zero = [&](void* ptr, size_t bytes) {
    return (ptr && bytes > 0) ? cudaMemsetAsync(ptr, 0, bytes, stream) : cudaSuccess;
  };
  cudaError_t err;
  if ((err = zero(dB_sum, bc_elems * sizeof(float))) != cudaSuccess) return err;
  if ((err = zero(dC_sum, bc_elems * sizeof(float))) != cudaSuccess) return err;
  if ((err = zero(p.dA, static_cast<size_t>(p.dim) * p.dstate * sizeof(float))) != cudaSuccess) return err;
  if ((err = zero(p.dD, static_cast<size_t>(p.dim) * sizeof(float))) != cudaSuccess) return err;
  if ((err = zero(p.ddelta_bias, static_cast<size_t>(p.dim) * sizeof(float))) != cudaSuccess) return err;

  // Pass 1: the state before every chunk of the exact kernel's chunking.
  const Geometry fgeo = make_geometry(KernelKind::kForward, p, geo.T);
  if ((err = launch_fwd_any<T>(p, fgeo, ckpt, stream)) != cudaSuccess) return err;
  // Pass 2: chunks in reverse.
  err = geo.S == 1 ? launch_bwd_exact<T, 1>(p, geo, ckpt, dB_sum, dC_sum, stream)
                   : launch_bwd_exact<T, 8>(p, geo, ckpt, dB_sum, dC_sum, stream);
  if (err != cudaSuccess) return err;
  if (p.input_type != ScanDType::kFloat32 && bc_elems > 0) {
    const int threads = 256;
    const int64_t want = (static_cast<int64_t>(bc_elems) + threads - 1) / threads;
    const unsigned blocks = static_cast<unsigned>(want < 65535 ? want : 65535);
    auto* convert = &convert_kernel<T>;
    MAMBA_LRP_CUDA_LAUNCH(convert, blocks, threads, 0, stream, dB_sum, static_cast<T*>(p.dB),
                          static_cast<int64_t>(bc_elems));
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    MAMBA_LRP_CUDA_LAUNCH(convert, blocks, threads, 0, stream, dC_sum, static_cast<T*>(p.dC),
                          static_cast<int64_t>(bc_elems));
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t run_fwd(const SelectiveScanParams& p, cudaStream_t stream) {
  const Geometry geo = make_geometry(KernelKind::kForward, p);
  return launch_fwd_any<T>(p, geo, nullptr, stream);
}

}  // namespace cuda
}  // namespace kernels
}  // namespace mamba_lrp

// Explicit instantiation of the launch templates for one input dtype (one .cu per dtype).
#define MAMBA_LRP_INSTANTIATE_SCAN(T)                                                                        \
  template cudaError_t mamba_lrp::kernels::cuda::run_fwd<T>(const mamba_lrp::kernels::SelectiveScanParams&,  \
                                                           cudaStream_t);                                    \
  template cudaError_t mamba_lrp::kernels::cuda::run_bwd<T>(const mamba_lrp::kernels::SelectiveScanBwdParams&, \
                                                           void*, cudaStream_t);
