// The backward scan loops for one instruction set, one row (or task) at a time: MambaLRP
// (bwd_lrp_row, from the inputs or the forward's factors), MambaLRP recompute (the row's
// forward first, then its reverse scan) and exact (bwd_exact_row); float16 / bfloat16 rows
// through float32 row buffers (ReducedBwdRows). Included by selective_scan_{isa}.cpp with
// MAMBA_LRP_CPU_ISA defined; the layout of the loops and what they share:
// selective_scan_loops_common.h.
#pragma once
#include "kernels/cpu/selective_scan_fwd_loops.h"
#include "kernels/cpu/selective_scan_loops_common.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace MAMBA_LRP_CPU_ISA {
namespace {

// The MambaLRP reverse scan over one chunk of a row (same layout), gh (exp(dt_{t+1} A)
// g_{t+1}) carried in and out: acc[0, n_full) gets B_t . g_t summed over the blocks. With
// kReadDecays the exp(dt_t A) come from decay (chunk_states_forward's kKeepDecays).
template <typename T, bool kDecayOnly, bool kReadDecays>
inline void chunk_states_reverse(const T* a, T* gh, int64_t dpad, const T* Bt, const T* Ct, int64_t b_step,
                                 int64_t c_step, const T* dt, const T* gy, int64_t n, int64_t n_full, T* acc, T* bg,
                                 const T* decay) {
  std::fill(acc, acc + n_full, T(0));
  if (n_full > n) std::fill(bg + n * kLanes<T>, bg + n_full * kLanes<T>, T(0));
  for (int64_t nb = 0; nb < dpad; nb += kLanes<T>) {
    const Vec<T> av = load(a + nb);
    Vec<T> carry = load(gh + nb);
    for (int64_t i = n - 1; i >= 0; --i) {
      const Vec<T> gt = carry + load(Ct + i * c_step + nb) * gy[i];
      store(bg + i * kLanes<T>, load(Bt + i * b_step + nb) * gt);
      if constexpr (kReadDecays) carry = load(decay + i * dpad + nb) * gt;
      else carry = exp_dtA<kDecayOnly>(av * dt[i]) * gt;
    }
    store(gh + nb, carry);
    for (int64_t i = 0; i < n_full; i += kLanes<T>) store(acc + i, load(acc + i) + row_sums(bg + i * kLanes<T>));
  }
}

// Output gradient split by the gate: gy (into y) and, when z is given, dz.
// exact:    out = y silu(z): gy = g silu(z), dz = g y silu'(z)
// MambaLRP: half to each factor, SiLU identity on z: gy = g silu(z)/2, dz = g y sigmoid(z)/2
template <typename T>
void chunk_gate_grads(const SelectiveScanBwdParams& p, const RowPtrs<T>& r, const T* gout, const T* out_y,
                      T* dz, int64_t t0, int64_t n, T* gy) {
  const bool lrp = p.rule == ScanRule::kMambaLRP;
  for (int64_t i = 0; i < n; i += kLanes<T>) {
    const int64_t m = n - i;
    const Vec<T> g = load_upto(gout + t0 + i, m);
    if (r.lrp_gy_scale) {  // the forward's factors (MambaLRP only)
      store(gy + i, g * load_upto(r.lrp_gy_scale + t0 + i, m));
      store_upto(dz + t0 + i, g * load_upto(r.lrp_dz_scale + t0 + i, m), m);
      continue;
    }
    if (!r.z) {
      store(gy + i, g);
      continue;
    }
    const Vec<T> zv = load_upto(r.z + t0 + i, m), yv = load_upto(out_y + t0 + i, m);
    const Vec<T> sv = vsigmoid(zv), silu = zv * sv;
    if (lrp) {
      store(gy + i, T(0.5) * g * silu);
      store_upto(dz + t0 + i, T(0.5) * g * yv * sv, m);
    } else {
      store(gy + i, g * silu);
      store_upto(dz + t0 + i, g * yv * sv * (T(1) + zv * (T(1) - sv)), m);
    }
  }
}

template <typename T>
struct BwdRow {
  RowPtrs<T> r;
  const T* gout;
  const T* out_y;
  T* du;
  T* dz;
  T* ddelta;
};

template <typename T>
BwdRow<T> bwd_row_ptrs(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t b, int64_t d) {
  BwdRow<T> q;
  q.r = row_ptrs<T>(p, w, b, d);
  q.gout = static_cast<const T*>(p.grad_out) + b * p.grad_out_batch_stride + d * p.grad_out_dim_stride;
  q.out_y = p.out_y ? static_cast<const T*>(p.out_y) + b * p.out_y_batch_stride + d * p.out_y_dim_stride : nullptr;
  q.du = static_cast<T*>(p.du) + b * p.du_batch_stride + d * p.du_dim_stride;
  q.dz = p.dz ? static_cast<T*>(p.dz) + b * p.dz_batch_stride + d * p.dz_dim_stride : nullptr;
  q.ddelta = p.ddelta ? static_cast<T*>(p.ddelta) + b * p.ddelta_batch_stride + d * p.ddelta_dim_stride : nullptr;
  return q;
}

template <typename T>
void init_state_grad(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t b, int64_t d, T* gh) {
  std::fill(gh, gh + w.dpad, T(0));
  if (p.grad_last_state) {
    const T* gls = static_cast<const T*>(p.grad_last_state) + (b * p.dim + d) * p.dstate;
    std::copy(gls, gls + p.dstate, gh);
  }
}

// MambaLRP backward of one row: a reverse linear scan, no forward states needed.
template <typename T, bool kDecayOnly>
void bwd_lrp_row(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t b, int64_t d) {
  const BwdRow<T> q = bwd_row_ptrs<T>(p, w, b, d);
  const bool has_next = d + 1 < p.dim;
  const BwdRow<T> next = has_next ? bwd_row_ptrs<T>(p, w, b, d + 1) : BwdRow<T>{};
  const T* Bt = bc_rows<T>(w.Bt, w.Bt_step, p, w, b, d);
  const T* Ct = bc_rows<T>(w.Ct, w.Ct_step, p, w, b, d);
  alignas(64) T a[kMaxDState];
  alignas(64) T gh[kMaxDState];  // exp(dt_{t+1} A) g_{t+1}: the part of g_t carried from the future
  load_A_row(p, d, w.dpad, a);
  init_state_grad(p, w, b, d, gh);
  alignas(64) T dt[kChunk], gy[kChunk], acc[kChunk];
  alignas(64) T bg[kChunk * kLanes<T>];  // B_t * g_t per step (this block of states), reduced later

  const int64_t chunks = (p.seqlen + kChunk - 1) / kChunk;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, n = std::min(kChunk, p.seqlen - t0);
    const int64_t n_full = (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;  // whole blocks of row sums
    if (has_next) {
      prefetch_steps(next.r.lrp_dt ? next.r.lrp_dt : next.r.delta, t0, n);
      prefetch_steps(next.r.lrp_gy_scale ? next.r.lrp_gy_scale : next.r.z, t0, n);
      prefetch_steps(next.r.lrp_dz_scale ? next.r.lrp_dz_scale : next.out_y, t0, n);
      prefetch_steps(next.gout, t0, n);
    }
    if (q.r.lrp_dt) {
      for (int64_t i = 0; i < n; i += kLanes<T>) store(dt + i, load_upto(q.r.lrp_dt + t0 + i, n - i));
    } else {
      chunk_dt<T>(p, q.r, t0, n, dt, nullptr);
    }
    chunk_gate_grads(p, q.r, q.gout, q.out_y, q.dz, t0, n, gy);
    chunk_states_reverse<T, kDecayOnly, false>(a, gh, w.dpad, Bt + t0 * w.Bt_step, Ct + t0 * w.Ct_step, w.Bt_step,
                                               w.Ct_step, dt, gy, n, n_full, acc, bg, nullptr);
    for (int64_t i = 0; i < n; i += kLanes<T>)
      store_upto(q.du + t0 + i, load(dt + i) * load(acc + i) + load(gy + i) * q.r.D, n - i);
  }
}

// Per-thread scratch of the recompute MambaLRP backward, for one row at a time: dt, the
// gate factors silu(z)/2 and y sigmoid(z)/2, and every decay exp(dt_t A) of the row.
template <typename T>
struct RecomputeScratch {
  T *dt, *gy_scale, *dz_scale;  // (seqlen rounded up to kChunk)
  T* sigmoid_c;                 // sigmoid(c) with ScanWork::u_through_silu
  T* decay;                     // (seqlen rounded up to kChunk, dpad)
};

template <typename T>
RecomputeScratch<T> recompute_scratch(int64_t seqlen, int64_t dpad) {
  thread_local std::vector<T> buffer;
  const int64_t steps = (seqlen + kChunk - 1) / kChunk * kChunk;
  const size_t need = static_cast<size_t>(steps * (4 + dpad));
  if (buffer.size() < need) buffer.assign(need, T(0));
  T* base = buffer.data();
  return {base, base + steps, base + 2 * steps, base + 3 * steps, base + 4 * steps};
}

// MambaLRP backward of one row that runs the row's forward first (no forward outputs or
// factors needed): the forward leaves dt, the gate factors and the decays exp(dt_t A) in the
// row scratch, and the reverse scan reads the decays from there instead of computing each
// exp again. Bitwise the results of fwd_row (with MambaLRP factors) then bwd_lrp_row. A row
// reads u and delta only in its forward part, so du and dz may take their places. With
// u_through_silu the row's u is silu(c) of the c it holds, and du goes out times sigmoid(c).
template <typename T, bool kDecayOnly>
void bwd_lrp_recompute_row(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t b, int64_t d,
                           const RecomputeScratch<T>& s) {
  const int64_t dpad = w.dpad;
  const BwdRow<T> q = bwd_row_ptrs<T>(p, w, b, d);
  const RowPtrs<T>& r = q.r;
  const bool has_next = d + 1 < p.dim;
  const RowPtrs<T> next = has_next ? row_ptrs<T>(p, w, b, d + 1) : RowPtrs<T>{};
  const T* Bt = bc_rows<T>(w.Bt, w.Bt_step, p, w, b, d);
  const T* Ct = bc_rows<T>(w.Ct, w.Ct_step, p, w, b, d);
  alignas(64) T a[kMaxDState];
  alignas(64) T h[kMaxDState];
  load_A_row(p, d, dpad, a);
  std::fill(h, h + dpad, T(0));
  alignas(64) T uc[kChunk], dtu[kChunk], y[kChunk];
  alignas(64) T ch[kChunk * kLanes<T>];  // C_t * h_t per step (this block of states), reduced later

  // The forward, as fwd_row, keeping what the reverse scan reads.
  for (int64_t t0 = 0; t0 < p.seqlen; t0 += kChunk) {
    const int64_t n = std::min(kChunk, p.seqlen - t0);
    const int64_t n_full = (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
    prefetch_steps(q.gout, t0, n);  // this row's reverse scan comes next
    T* dt = s.dt + t0;
    chunk_dt<T>(p, r, t0, n, dt, nullptr);
    for (int64_t i = 0; i < n; i += kLanes<T>) {
      Vec<T> uv = load_upto(r.u + t0 + i, n - i);
      if (w.u_through_silu) {
        const Vec<T> sv = vsigmoid(uv);
        store(s.sigmoid_c + t0 + i, sv);
        uv = uv * sv;
      }
      store(uc + i, uv);
      store(dtu + i, load(dt + i) * uv);
    }
    chunk_states_forward<T, kDecayOnly, true>(a, h, dpad, Bt + t0 * w.Bt_step, Ct + t0 * w.Ct_step, w.Bt_step,
                                              w.Ct_step, dt, dtu, n, n_full, y, ch, s.decay + t0 * dpad);
    if (!r.z) continue;
    for (int64_t i = 0; i < n; i += kLanes<T>) {
      const Vec<T> yv = load(y + i) + load(uc + i) * r.D;
      const Vec<T> zv = load_upto(r.z + t0 + i, n - i), sv = vsigmoid(zv);
      store(s.gy_scale + t0 + i, T(0.5) * zv * sv);
      store(s.dz_scale + t0 + i, T(0.5) * yv * sv);
    }
  }

  // The reverse scan, as bwd_lrp_row, with the kept factors and decays.
  RowPtrs<T> kept = r;
  kept.lrp_dt = s.dt;
  kept.lrp_gy_scale = r.z ? s.gy_scale : nullptr;
  kept.lrp_dz_scale = r.z ? s.dz_scale : nullptr;
  alignas(64) T gh[kMaxDState];  // exp(dt_{t+1} A) g_{t+1}: the part of g_t carried from the future
  init_state_grad(p, w, b, d, gh);
  alignas(64) T gy[kChunk], acc[kChunk];
  alignas(64) T bg[kChunk * kLanes<T>];  // B_t * g_t per step (this block of states), reduced later
  const int64_t chunks = (p.seqlen + kChunk - 1) / kChunk;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, n = std::min(kChunk, p.seqlen - t0);
    const int64_t n_full = (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
    if (has_next) {  // the next row's forward comes next
      prefetch_steps(next.delta, t0, n);
      prefetch_steps(next.u, t0, n);
      prefetch_steps(next.z, t0, n);
    }
    chunk_gate_grads<T>(p, kept, q.gout, nullptr, q.dz, t0, n, gy);
    chunk_states_reverse<T, kDecayOnly, true>(a, gh, dpad, Bt + t0 * w.Bt_step, Ct + t0 * w.Ct_step, w.Bt_step,
                                              w.Ct_step, s.dt + t0, gy, n, n_full, acc, bg, s.decay + t0 * dpad);
    for (int64_t i = 0; i < n; i += kLanes<T>) {
      Vec<T> duv = load(s.dt + t0 + i) * load(acc + i) + load(gy + i) * r.D;
      if (w.u_through_silu) duv = duv * load(s.sigmoid_c + t0 + i);
      store_upto(q.du + t0 + i, duv, n - i);
    }
  }
}

// The exact backward's gradient partials of a time-varying B / C (ScanWork::dBt, dCt):
// (seqlen, dpad) per task, zeroed before the task's first row. A constant one's are per row.
template <typename T>
void zero_exact_partials(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t task) {
  const int64_t size = p.seqlen * w.dpad;
  if (w.Bt_step != 0) std::fill(static_cast<T*>(w.dBt) + task * size, static_cast<T*>(w.dBt) + (task + 1) * size, T(0));
  if (w.Ct_step != 0) std::fill(static_cast<T*>(w.dCt) + task * size, static_cast<T*>(w.dCt) + (task + 1) * size, T(0));
}

// Exact backward of row (b, d) of task (batch, group, part): a time-varying B / C's gradient
// is added to this task's own partial, so no two tasks write the same memory. kConstB /
// kConstC: that one is constant in time (step 0), its gradient summed over the row's steps
// in registers and written to the row's own partial (dpad at (b, d)).
template <typename T, bool kConstB, bool kConstC>
void bwd_exact_row(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t task, int64_t b, int64_t d) {
  const int64_t dpad = w.dpad;
  const int64_t chunks = (p.seqlen + kChunk - 1) / kChunk;
  const T* Bt = bc_rows<T>(w.Bt, w.Bt_step, p, w, b, d);
  const T* Ct = bc_rows<T>(w.Ct, w.Ct_step, p, w, b, d);
  T* ckpt = static_cast<T*>(w.checkpoints) + task * chunks * dpad;
  T* hs = static_cast<T*>(w.chunk_states) + task * (kChunk + 1) * dpad;
  const int64_t row_at = (b * p.dim + d) * dpad, task_at = task * p.seqlen * dpad;
  T* dBt = static_cast<T*>(w.dBt) + (kConstB ? row_at : task_at);
  T* dCt = static_cast<T*>(w.dCt) + (kConstC ? row_at : task_at);
  if (kConstB) std::fill(dBt, dBt + dpad, T(0));
  if (kConstC) std::fill(dCt, dCt + dpad, T(0));
  const int64_t b_step = kConstB ? 0 : dpad, c_step = kConstC ? 0 : dpad;

  alignas(64) T a[kMaxDState], h[kMaxDState], gh[kMaxDState], dA_acc[kMaxDState];
  alignas(64) T dt[kChunk], dsp[kChunk], dtu[kChunk], gy[kChunk], sum_bg[kChunk], sum_gah[kChunk];
  const BwdRow<T> q = bwd_row_ptrs<T>(p, w, b, d);
  load_A_row(p, d, dpad, a);

  // Pass 1: the state at the start of every chunk.
  std::fill(h, h + dpad, T(0));
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = c * kChunk, n = std::min(kChunk, p.seqlen - t0);
    std::copy(h, h + dpad, ckpt + c * dpad);
    if (c == chunks - 1) break;
    chunk_dt<T>(p, q.r, t0, n, dt, nullptr);
    for (int64_t nb = 0; nb < dpad; nb += kLanes<T>) {
      const Vec<T> av = load(a + nb);
      Vec<T> hv = load(h + nb);
      for (int64_t i = 0; i < n; ++i)
        hv = vexp(av * dt[i]) * hv + load(Bt + (t0 + i) * b_step + nb) * (dt[i] * q.r.u[t0 + i]);
      store(h + nb, hv);
    }
  }

  // Pass 2: chunks in reverse; recompute their states, then the reverse scan.
  init_state_grad(p, w, b, d, gh);
  std::fill(dA_acc, dA_acc + dpad, T(0));
  T dD = 0, dbias = 0;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, n = std::min(kChunk, p.seqlen - t0);
    chunk_dt<T>(p, q.r, t0, n, dt, dsp);
    chunk_gate_grads(p, q.r, q.gout, q.out_y, q.dz, t0, n, gy);
    for (int64_t i = 0; i < n; ++i) {
      dtu[i] = dt[i] * q.r.u[t0 + i];
      sum_bg[i] = sum_gah[i] = T(0);
    }
    for (int64_t nb = 0; nb < dpad; nb += kLanes<T>) {
      const Vec<T> av = load(a + nb);
      // hs[i] = state before step t0+i; hs[i+1] = after it.
      Vec<T> hv = load(ckpt + c * dpad + nb);
      store(hs + nb, hv);
      for (int64_t i = 0; i < n; ++i) {
        hv = vexp(av * dt[i]) * hv + load(Bt + (t0 + i) * b_step + nb) * dtu[i];
        store(hs + (i + 1) * dpad + nb, hv);
      }
      Vec<T> carry = load(gh + nb);
      Vec<T> dAv = load(dA_acc + nb);
      Vec<T> dB_sum{}, dC_sum{};  // constant B / C: this chunk's sums
      for (int64_t i = n - 1; i >= 0; --i) {
        const int64_t t = t0 + i;
        const Vec<T> Bv = load(Bt + t * b_step + nb);
        const Vec<T> gt = carry + load(Ct + t * c_step + nb) * gy[i];
        const Vec<T> dC_t = load(hs + (i + 1) * dpad + nb) * gy[i], dB_t = gt * dtu[i];
        if constexpr (kConstC) dC_sum += dC_t;
        else store(dCt + t * dpad + nb, load(dCt + t * dpad + nb) + dC_t);
        if constexpr (kConstB) dB_sum += dB_t;
        else store(dBt + t * dpad + nb, load(dBt + t * dpad + nb) + dB_t);
        sum_bg[i] += hsum(Bv * gt);
        const Vec<T> e = vexp(av * dt[i]);
        const Vec<T> geh = gt * e * load(hs + i * dpad + nb);  // g_t exp(dt A) h_{t-1}
        sum_gah[i] += hsum(geh * av);
        dAv += geh * dt[i];
        carry = e * gt;
      }
      store(gh + nb, carry);
      store(dA_acc + nb, dAv);
      if constexpr (kConstB) store(dBt + nb, load(dBt + nb) + dB_sum);
      if constexpr (kConstC) store(dCt + nb, load(dCt + nb) + dC_sum);
    }
    for (int64_t i = 0; i < n; ++i) {
      const T u = q.r.u[t0 + i];
      q.du[t0 + i] = dt[i] * sum_bg[i] + q.r.D * gy[i];
      const T ddt = sum_gah[i] + u * sum_bg[i];
      const T ddelta = ddt * dsp[i];
      if (q.ddelta) q.ddelta[t0 + i] = ddelta;
      dbias += ddelta;
      dD += gy[i] * u;
    }
  }
  if (w.dA) std::copy(dA_acc, dA_acc + dpad, static_cast<T*>(w.dA) + (b * p.dim + d) * dpad);
  if (w.dD) static_cast<T*>(w.dD)[b * p.dim + d] = dD;
  if (w.ddelta_bias) static_cast<T*>(w.ddelta_bias)[b * p.dim + d] = dbias;
}

// Backward rows of float16 / bfloat16 inputs, as fwd_rows_reduced: the row's inputs that
// the rule reads (u, delta, z, the pre-gate y, the output gradient) converted into float32
// row buffers, the float32 row run on them (params q), its du, ddelta, dz converted back.
// B / C (transposed once, in float32), their gradient partials, dA, dD, ddelta_bias and the
// state gradient are float32 throughout.
struct ReducedBwdRows {
  const SelectiveScanBwdParams& p;
  SelectiveScanBwdParams q;
  std::vector<float> buf;
  float *u, *delta, *z, *out_y, *gout, *du, *dz, *ddelta;

  explicit ReducedBwdRows(const SelectiveScanBwdParams& params)
      : p(params), q(params), buf(static_cast<size_t>(8 * params.seqlen)) {
    float* next = buf.data();
    for (float** row : {&u, &delta, &z, &out_y, &gout, &du, &dz, &ddelta}) {
      *row = next;
      next += p.seqlen;
    }
    q.input_type = ScanDType::kFloat32;
    point_at_row(q.u, q.u_batch_stride, q.u_dim_stride, u);
    point_at_row(q.delta, q.delta_batch_stride, q.delta_dim_stride, delta);
    if (p.z) point_at_row(q.z, q.z_batch_stride, q.z_dim_stride, z);
    if (p.out_y) point_at_row(q.out_y, q.out_y_batch_stride, q.out_y_dim_stride, out_y);
    point_at_row(q.grad_out, q.grad_out_batch_stride, q.grad_out_dim_stride, gout);
    point_at_row(q.du, q.du_batch_stride, q.du_dim_stride, du);
    if (p.dz) point_at_row(q.dz, q.dz_batch_stride, q.dz_dim_stride, dz);
    if (p.ddelta) point_at_row(q.ddelta, q.ddelta_batch_stride, q.ddelta_dim_stride, ddelta);
  }

  // Row (b, d)'s inputs into the buffers. The MambaLRP rule never reads u.
  void load(int64_t b, int64_t d) {
    auto in = [&](const void* base, int64_t bs, int64_t ds, float* row) {
      if (base) row_to_float(reduced_row(base, bs, ds, b, d), row, p.seqlen, p.input_type);
    };
    if (p.rule == ScanRule::kExact) in(p.u, p.u_batch_stride, p.u_dim_stride, u);
    in(p.delta, p.delta_batch_stride, p.delta_dim_stride, delta);
    in(p.z, p.z_batch_stride, p.z_dim_stride, z);
    in(p.out_y, p.out_y_batch_stride, p.out_y_dim_stride, out_y);
    in(p.grad_out, p.grad_out_batch_stride, p.grad_out_dim_stride, gout);
  }
  // Row (b, d)'s gradients out of the buffers.
  void store(int64_t b, int64_t d) {
    auto out = [&](void* base, int64_t bs, int64_t ds, const float* row) {
      if (base) row_from_float(row, reduced_row(base, bs, ds, b, d), p.seqlen, p.input_type);
    };
    out(p.du, p.du_batch_stride, p.du_dim_stride, du);
    out(p.dz, p.dz_batch_stride, p.dz_dim_stride, dz);
    out(p.ddelta, p.ddelta_batch_stride, p.ddelta_dim_stride, ddelta);
  }
};

}  // namespace

void bwd_lrp_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin, int64_t end) {
  if (is_reduced(p.input_type)) {
    ReducedBwdRows rows(p);
    bool_switch(w.decay_only, [&](auto kDecayOnly) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / p.dim, d = item % p.dim;
        rows.load(b, d);
        bwd_lrp_row<float, decltype(kDecayOnly)::value>(rows.q, w, b, d);
        rows.store(b, d);
      }
    });
    return;
  }
  bool_switch(is_f64(p), [&](auto kF64) {
    bool_switch(w.decay_only, [&](auto kDecayOnly) {
      using T = ScanFloat<decltype(kF64)::value>;
      for (int64_t item = begin; item < end; ++item)
        bwd_lrp_row<T, decltype(kDecayOnly)::value>(p, w, item / p.dim, item % p.dim);
    });
  });
}

void bwd_lrp_recompute_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin, int64_t end) {
  bool_switch(is_f64(p), [&](auto kF64) {
    using T = ScanFloat<decltype(kF64)::value>;
    const RecomputeScratch<T> s = recompute_scratch<T>(p.seqlen, w.dpad);  // this thread's, for every row
    bool_switch(w.decay_only, [&](auto kDecayOnly) {
      for (int64_t item = begin; item < end; ++item)
        bwd_lrp_recompute_row<T, decltype(kDecayOnly)::value>(p, w, item / p.dim, item % p.dim, s);
    });
  });
}

void bwd_exact_range(const SelectiveScanBwdParams& p, const ScanWork& w, int64_t begin, int64_t end) {
  const int64_t per_group = p.dim_per_group();
  const int64_t part_len = (per_group + w.parts - 1) / w.parts;
  // Task (batch, group, part) -> its rows [d_begin, d_end), and each row (b, d) run by `row`.
  auto for_each_task = [&](auto zero_partials, auto row) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t part = task % w.parts, bg = task / w.parts;
      const int64_t b = bg / p.n_groups, g = bg % p.n_groups;
      const int64_t d_begin = g * per_group + std::min(per_group, part * part_len);
      const int64_t d_end = g * per_group + std::min(per_group, (part + 1) * part_len);
      zero_partials(task);
      for (int64_t d = d_begin; d < d_end; ++d) row(task, b, d);
    }
  };
  bool_switch(w.Bt_step == 0, [&](auto kConstB) {
    bool_switch(w.Ct_step == 0, [&](auto kConstC) {
      constexpr bool kB = decltype(kConstB)::value, kC = decltype(kConstC)::value;
      if (is_reduced(p.input_type)) {
        ReducedBwdRows rows(p);
        for_each_task([&](int64_t task) { zero_exact_partials<float>(p, w, task); },
                      [&](int64_t task, int64_t b, int64_t d) {
                        rows.load(b, d);
                        bwd_exact_row<float, kB, kC>(rows.q, w, task, b, d);
                        rows.store(b, d);
                      });
        return;
      }
      bool_switch(is_f64(p), [&](auto kF64) {
        using T = ScanFloat<decltype(kF64)::value>;
        for_each_task([&](int64_t task) { zero_exact_partials<T>(p, w, task); },
                      [&](int64_t task, int64_t b, int64_t d) {
                        bwd_exact_row<T, kB, kC>(p, w, task, b, d);
                      });
      });
    });
  });
}

}  // namespace MAMBA_LRP_CPU_ISA
}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
