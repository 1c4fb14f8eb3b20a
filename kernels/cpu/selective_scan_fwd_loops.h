// The forward scan loops for one instruction set: the chunk's states (also run by the
// recompute backward, selective_scan_bwd_loops.h), the forward of one row, and the rows of
// float16 / bfloat16 inputs (converted row by row around the float32 row). Included by
// selective_scan_{isa}.cpp with MAMBA_LRP_CPU_ISA defined; the layout of the loops and
// what they share: selective_scan_loops_common.h.
#pragma once
#include "kernels/cpu/half_convert.h"
#include "kernels/cpu/selective_scan_loops_common.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace {

// The forward's states over one chunk of a row (Bt, Ct, dt, dtu start at the chunk; steps
// [0, n); step i of B at Bt + i * b_step, of C at Ct + i * c_step: ScanWork::Bt_step), a
// block of kLanes states at a time, h carried in and out: y[0, n_full) gets
// C_t . h_t summed over the blocks. With kKeepDecays every exp(dt_t A) also goes to
// decay[t * dpad + state] (the recompute backward's row buffer).
template <typename T, bool kDecayOnly, bool kKeepDecays>
inline void chunk_states_forward(const T* a, T* h, int64_t dpad, const T* Bt, const T* Ct, int64_t b_step,
                                 int64_t c_step, const T* dt, const T* dtu, int64_t n, int64_t n_full, T* y, T* ch,
                                 T* decay) {
  std::fill(y, y + n_full, T(0));
  if (n_full > n) std::fill(ch + n * kLanes<T>, ch + n_full * kLanes<T>, T(0));
  for (int64_t nb = 0; nb < dpad; nb += kLanes<T>) {
    const Vec<T> av = load(a + nb);
    Vec<T> hv = load(h + nb);
    for (int64_t i = 0; i < n; ++i) {
      const Vec<T> e = exp_dtA<kDecayOnly>(av * dt[i]);
      if constexpr (kKeepDecays) store(decay + i * dpad + nb, e);
      hv = e * hv + load(Bt + i * b_step + nb) * dtu[i];
      store(ch + i * kLanes<T>, load(Ct + i * c_step + nb) * hv);
    }
    store(h + nb, hv);
    for (int64_t i = 0; i < n_full; i += kLanes<T>) store(y + i, load(y + i) + row_sums(ch + i * kLanes<T>));
  }
}

// The forward of row (b, d): out, out_y and last_state (those set), and the MambaLRP
// factors when asked (ScanWork::lrp).
template <typename T, bool kDecayOnly>
void fwd_row(const SelectiveScanParams& p, const ScanWork& w, int64_t b, int64_t d) {
  const RowPtrs<T> r = row_ptrs<T>(p, w, b, d);
  const RowPtrs<T> next = d + 1 < p.dim ? row_ptrs<T>(p, w, b, d + 1) : RowPtrs<T>{};
  const T* Bt = bc_rows<T>(w.Bt, w.Bt_step, p, w, b, d);
  const T* Ct = bc_rows<T>(w.Ct, w.Ct_step, p, w, b, d);
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + d * p.out_dim_stride;
  T* out_y = p.out_y ? static_cast<T*>(p.out_y) + b * p.out_y_batch_stride + d * p.out_y_dim_stride : nullptr;

  alignas(64) T a[kMaxDState];
  alignas(64) T h[kMaxDState];
  load_A_row(p, d, w.dpad, a);
  std::fill(h, h + w.dpad, T(0));
  alignas(64) T dt[kChunk], dtu[kChunk], y[kChunk];
  static_assert(kChunk % kLanes<T> == 0, "chunks hold whole blocks of row sums");
  alignas(64) T ch[kChunk * kLanes<T>];  // C_t * h_t per step (this block of states), reduced later

  for (int64_t t0 = 0; t0 < p.seqlen; t0 += kChunk) {
    const int64_t n = std::min(kChunk, p.seqlen - t0);
    const int64_t n_full = (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;  // whole blocks of row sums
    prefetch_steps(next.delta, t0, n);
    prefetch_steps(next.u, t0, n);
    prefetch_steps(next.z, t0, n);
    chunk_dt<T>(p, r, t0, n, dt, nullptr);
    if (r.lrp_dt) std::copy(dt, dt + n, r.lrp_dt + t0);
    for (int64_t i = 0; i < n; i += kLanes<T>) store(dtu + i, load(dt + i) * load_upto(r.u + t0 + i, n - i));
    chunk_states_forward<T, kDecayOnly, false>(a, h, w.dpad, Bt + t0 * w.Bt_step, Ct + t0 * w.Ct_step, w.Bt_step,
                                               w.Ct_step, dt, dtu, n, n_full, y, ch, nullptr);
    for (int64_t i = 0; i < n; i += kLanes<T>) {
      const Vec<T> yv = load(y + i) + load_upto(r.u + t0 + i, n - i) * r.D;
      if (out_y) store_upto(out_y + t0 + i, yv, n - i);
      if (r.z) {
        const Vec<T> zv = load_upto(r.z + t0 + i, n - i), sv = vsigmoid(zv), silu = zv * sv;
        store_upto(out + t0 + i, yv * silu, n - i);
        if (r.lrp_gy_scale) store_upto(r.lrp_gy_scale + t0 + i, T(0.5) * silu, n - i);
        if (r.lrp_dz_scale) store_upto(r.lrp_dz_scale + t0 + i, T(0.5) * yv * sv, n - i);
      } else {
        store_upto(out + t0 + i, yv, n - i);
      }
    }
  }
  if (p.last_state) {
    T* ls = static_cast<T*>(p.last_state) + (b * p.dim + d) * p.dstate;
    std::copy(h, h + p.dstate, ls);
  }
}

// float16 / bfloat16 rows go through float32 row buffers: the params of the float32 row
// functions point at a buffer, with zero batch / dim strides, in place of a tensor, so that
// whatever row they are given they read and write the buffer.
template <typename Ptr>
inline void point_at_row(Ptr& ptr, int64_t& batch_stride, int64_t& dim_stride, float* row) {
  ptr = row;
  batch_stride = dim_stride = 0;
}
inline const uint16_t* reduced_row(const void* base, int64_t batch_stride, int64_t dim_stride, int64_t b, int64_t d) {
  return static_cast<const uint16_t*>(base) + b * batch_stride + d * dim_stride;
}
inline uint16_t* reduced_row(void* base, int64_t batch_stride, int64_t dim_stride, int64_t b, int64_t d) {
  return static_cast<uint16_t*>(base) + b * batch_stride + d * dim_stride;
}

// Rows of float16 / bfloat16 inputs: each row's u, delta, z converted into float32 row
// buffers, the float32 row run on them, its out / out_y converted back into the input
// dtype. A row's data is in cache for both conversions; last_state is float32 and written
// directly.
template <bool kDecayOnly>
void fwd_rows_reduced(const SelectiveScanParams& p, const ScanWork& w, int64_t begin, int64_t end) {
  std::vector<float> buf(static_cast<size_t>(5 * p.seqlen));
  float* u = buf.data();
  float* delta = u + p.seqlen;
  float* z = delta + p.seqlen;
  float* out = z + p.seqlen;
  float* out_y = out + p.seqlen;
  SelectiveScanParams q = p;
  q.input_type = ScanDType::kFloat32;
  point_at_row(q.u, q.u_batch_stride, q.u_dim_stride, u);
  point_at_row(q.delta, q.delta_batch_stride, q.delta_dim_stride, delta);
  if (p.z) point_at_row(q.z, q.z_batch_stride, q.z_dim_stride, z);
  point_at_row(q.out, q.out_batch_stride, q.out_dim_stride, out);
  if (p.out_y) point_at_row(q.out_y, q.out_y_batch_stride, q.out_y_dim_stride, out_y);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / p.dim, d = item % p.dim;
    row_to_float(reduced_row(p.u, p.u_batch_stride, p.u_dim_stride, b, d), u, p.seqlen, p.input_type);
    row_to_float(reduced_row(p.delta, p.delta_batch_stride, p.delta_dim_stride, b, d), delta, p.seqlen, p.input_type);
    if (p.z) row_to_float(reduced_row(p.z, p.z_batch_stride, p.z_dim_stride, b, d), z, p.seqlen, p.input_type);
    fwd_row<float, kDecayOnly>(q, w, b, d);
    row_from_float(out, reduced_row(p.out, p.out_batch_stride, p.out_dim_stride, b, d), p.seqlen, p.input_type);
    if (p.out_y)
      row_from_float(out_y, reduced_row(p.out_y, p.out_y_batch_stride, p.out_y_dim_stride, b, d), p.seqlen,
                     p.input_type);
  }
}

}  // namespace

void fwd_range(const SelectiveScanParams& p, const ScanWork& w, int64_t begin, int64_t end) {
  if (is_reduced(p.input_type)) {
    bool_switch(w.decay_only, [&](auto kDecayOnly) { fwd_rows_reduced<decltype(kDecayOnly)::value>(p, w, begin, end); });
    return;
  }
  bool_switch(is_f64(p), [&](auto kF64) {
    bool_switch(w.decay_only, [&](auto kDecayOnly) {
      using T = ScanFloat<decltype(kF64)::value>;
      for (int64_t item = begin; item < end; ++item)
        fwd_row<T, decltype(kDecayOnly)::value>(p, w, item / p.dim, item % p.dim);
    });
  });
}

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
