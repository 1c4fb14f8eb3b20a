// CPU selective scan: picks the instruction set, prepares the scratch (B and C in the
// (seqlen, state) order the loops read, gradient partials) and runs the loops in parallel.
// Compiled for the baseline instruction set: nothing here may need AVX.
#include "kernels/cpu/selective_scan_cpu.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/half_convert.h"
#include "kernels/cpu/selective_scan_work.h"

namespace mamba_lrp {
namespace kernels {
namespace cpu {
namespace {

constexpr int64_t kLaneCount = 16;
constexpr int64_t kMaxExactParts = 8;  // dims of a group split into at most this many tasks

enum class Isa { kBaseline, kAvx2, kAvx512 };

// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

Isa detect_isa() {
  __builtin_cpu_init();
  Isa best = Isa::kBaseline;
  // f16c: the float16 conversions of those TUs (every AVX2 CPU has it).
  const bool fma_f16c = __builtin_cpu_supports("fma") && cpu_has_f16c();
  if (__builtin_cpu_supports("avx2") && fma_f16c) best = Isa::kAvx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && fma_f16c)
    best = Isa::kAvx512;
  if (const char* forced = std::getenv("MAMBA_LRP_CPU_ISA")) {
    const std::string f(forced);
    Isa want = best;
    if (f == "baseline") want = Isa::kBaseline;
    else if (f == "avx2") want = Isa::kAvx2;
    else if (f == "avx512") want = Isa::kAvx512;
    if (static_cast<int>(want) < static_cast<int>(best)) best = want;  // never above what the CPU has
  }
  return best;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

// The loops of one instruction set.
struct IsaLoops {
  void (*fwd)(const SelectiveScanParams&, const ScanWork&, int64_t, int64_t);
  void (*bwd_lrp)(const SelectiveScanBwdParams&, const ScanWork&, int64_t, int64_t);
  void (*bwd_lrp_recompute)(const SelectiveScanBwdParams&, const ScanWork&, int64_t, int64_t);
  void (*bwd_exact)(const SelectiveScanBwdParams&, const ScanWork&, int64_t, int64_t);
};

const IsaLoops& loops() {
  static const IsaLoops table[] = {
      {baseline::fwd_range, baseline::bwd_lrp_range, baseline::bwd_lrp_recompute_range, baseline::bwd_exact_range},
      {avx2::fwd_range, avx2::bwd_lrp_range, avx2::bwd_lrp_recompute_range, avx2::bwd_exact_range},
      {avx512::fwd_range, avx512::bwd_lrp_range, avx512::bwd_lrp_recompute_range, avx512::bwd_exact_range},
  };
  return table[static_cast<int>(isa())];
}

// B or C as the loops read it: its pointer and strides in the params.
struct BcSource {
  const void* data;
  int64_t batch_stride, group_stride, dstate_stride;
  bool constant;  // time stride 0: one (dim, dstate) matrix (group stride: between channels)
};
BcSource b_source(const SelectiveScanParams& p) {
  return {p.B, p.B_batch_stride, p.B_group_stride, p.B_dstate_stride, p.B_time_stride == 0};
}
BcSource c_source(const SelectiveScanParams& p) {
  return {p.C, p.C_batch_stride, p.C_group_stride, p.C_dstate_stride, p.C_time_stride == 0};
}

// (batch, groups, dstate, seqlen) with given strides -> dense (batch, groups, seqlen, dpad),
// read as S and stored as T through `convert`; a constant (dim, dstate) one -> (dim, dpad).
template <typename T, typename S, typename Convert>
std::vector<T> transpose_bc(const BcSource& src, const SelectiveScanParams& p, int64_t dpad, Convert convert) {
  const int64_t batches = src.constant ? 1 : p.batch, steps = src.constant ? 1 : p.seqlen;
  const int64_t groups = src.constant ? p.dim : p.n_groups;
  std::vector<T> out(static_cast<size_t>(batches * groups * steps * dpad), T(0));
  const S* s = static_cast<const S*>(src.data);
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t g = 0; g < groups; ++g) {
      T* o = out.data() + (b * groups + g) * steps * dpad;
      const S* sg = s + b * src.batch_stride + g * src.group_stride;
      for (int64_t n = 0; n < p.dstate; ++n)
        for (int64_t t = 0; t < steps; ++t) o[t * dpad + n] = convert(sg[n * src.dstate_stride + t]);
    }
  return out;
}

// B or C of a call in the loops' layout and type T (float16 / bfloat16 inputs: float32).
template <typename T>
std::vector<T> transposed_bc(const BcSource& src, const SelectiveScanParams& p, int64_t dpad) {
  if (p.input_type == ScanDType::kFloat16) return transpose_bc<T, uint16_t>(src, p, dpad, half_to_float);
  if (p.input_type == ScanDType::kBFloat16) return transpose_bc<T, uint16_t>(src, p, dpad, bf16_to_float);
  return transpose_bc<T, T>(src, p, dpad, [](T v) { return v; });
}

// B and C transposed into w (the vectors own them: they must outlive the loops).
template <typename T>
void prepare_bc(const SelectiveScanParams& p, ScanWork& w, std::vector<T>& Bt, std::vector<T>& Ct) {
  Bt = transposed_bc<T>(b_source(p), p, w.dpad);
  Ct = transposed_bc<T>(c_source(p), p, w.dpad);
  w.Bt = Bt.data();
  w.Ct = Ct.data();
  w.Bt_step = p.B_time_stride == 0 ? 0 : w.dpad;
  w.Ct_step = p.C_time_stride == 0 ? 0 : w.dpad;
}

int64_t padded_dstate(int64_t dstate) { return (dstate + kLaneCount - 1) / kLaneCount * kLaneCount; }

// Rows per parallel task: enough work per task to amortise the hand-off.
int64_t row_grain(const SelectiveScanParams& p, int64_t dpad) {
  const int64_t per_row = p.seqlen * dpad;
  return per_row >= 65536 ? 1 : 65536 / (per_row > 0 ? per_row : 1);
}

// Whether every exponent dt A is <= 0: dt through softplus (>= 0) and A <= 0 everywhere, as
// in every Mamba model (A = -exp(A_log)). The loops then use the cheaper vexp_nonpositive.
template <typename T>
bool decays_only(const SelectiveScanParams& p) {
  if (!p.delta_softplus) return false;
  const T* A = static_cast<const T*>(p.A);
  for (int64_t d = 0; d < p.dim; ++d)
    for (int64_t n = 0; n < p.dstate; ++n)
      if (!(A[d * p.A_dim_stride + n * p.A_dstate_stride] <= T(0))) return false;
  return true;
}

// allow_reduced: float16 / bfloat16 inputs with float32 weights (the forward and the
// backward; the recompute backward's caller converts them to float32).
void check_supported(const SelectiveScanParams& p, bool allow_reduced = false) {
  const bool same = p.input_type == p.weight_type &&
                    (p.input_type == ScanDType::kFloat32 || p.input_type == ScanDType::kFloat64);
  const bool reduced = allow_reduced && is_reduced(p.input_type) && p.weight_type == ScanDType::kFloat32;
  if (!same && !reduced)
    throw std::invalid_argument(allow_reduced ? "selective_scan CPU kernel: inputs must all be float32 or all float64, "
                                                "or float16/bfloat16 with float32 weights"
                                              : "selective_scan CPU kernel: inputs must all be float32 or all float64");
  if (p.dstate < 1 || p.dstate > kMaxDState) throw std::invalid_argument("selective_scan CPU kernel: dstate out of range");
  if (p.n_groups < 1 || p.dim % p.n_groups != 0) throw std::invalid_argument("selective_scan CPU kernel: bad group count");
  for (int64_t s : {p.B_time_stride, p.C_time_stride})
    if (s != 0 && s != 1) throw std::invalid_argument("selective_scan CPU kernel: B/C time stride must be 1 or 0");
}

// w comes with the call's modes set (ScanWork::lrp); the scratch is prepared here.
template <typename T>
void fwd_impl(const SelectiveScanParams& p, ScanWork w, ParallelFor parallel_for) {
  w.dpad = padded_dstate(p.dstate);
  w.decay_only = decays_only<T>(p);
  std::vector<T> Bt, Ct;
  prepare_bc(p, w, Bt, Ct);
  const IsaLoops& run = loops();
  run_parallel(parallel_for, p.batch * p.dim, row_grain(p, w.dpad),
               [&](int64_t begin, int64_t end) { run.fwd(p, w, begin, end); });
}

// w comes with the call's modes set (ScanWork::lrp, u_through_silu); the scratch is prepared
// here. With recompute the MambaLRP rows run their forward first (selective_scan_bwd_lrp_recompute).
template <typename T>
void bwd_impl(const SelectiveScanBwdParams& p, ScanWork w, ParallelFor parallel_for, bool recompute) {
  w.dpad = padded_dstate(p.dstate);
  w.decay_only = decays_only<T>(p);
  std::vector<T> Bt, Ct;
  prepare_bc(p, w, Bt, Ct);
  const IsaLoops& run = loops();

  if (p.rule == ScanRule::kMambaLRP) {
    const auto rows = recompute ? run.bwd_lrp_recompute : run.bwd_lrp;
    run_parallel(parallel_for, p.batch * p.dim, row_grain(p, w.dpad),
                 [&](int64_t begin, int64_t end) { rows(p, w, begin, end); });
    return;
  }

  // Exact rule: tasks = (batch, group, part); each owns its dB/dC partial, so the result
  // does not depend on the thread count or scheduling.
  const int64_t per_group = p.dim_per_group();
  w.parts = per_group < kMaxExactParts ? per_group : kMaxExactParts;
  const int64_t tasks = p.batch * p.n_groups * w.parts;
  const int64_t chunks = (p.seqlen + kChunk - 1) / kChunk;
  std::vector<T> checkpoints(static_cast<size_t>(tasks * chunks * w.dpad));
  std::vector<T> chunk_states(static_cast<size_t>(tasks * (kChunk + 1) * w.dpad));
  // Partials: (tasks, seqlen, dpad), or for a constant B / C (batch, dim, dpad) (per row,
  // summed over time).
  auto partial_size = [&](int64_t step) { return step == 0 ? p.batch * p.dim * w.dpad : tasks * p.seqlen * w.dpad; };
  std::vector<T> dBt(static_cast<size_t>(partial_size(w.Bt_step)));
  std::vector<T> dCt(static_cast<size_t>(partial_size(w.Ct_step)));
  std::vector<T> dA(static_cast<size_t>(p.batch * p.dim * w.dpad), T(0));
  std::vector<T> dD(static_cast<size_t>(p.batch * p.dim), T(0));
  std::vector<T> dbias(static_cast<size_t>(p.batch * p.dim), T(0));
  w.checkpoints = checkpoints.data();
  w.chunk_states = chunk_states.data();
  w.dBt = dBt.data();
  w.dCt = dCt.data();
  w.dA = dA.data();
  w.dD = dD.data();
  w.ddelta_bias = dbias.data();
  run_parallel(parallel_for, tasks, 1, [&](int64_t begin, int64_t end) { run.bwd_exact(p, w, begin, end); });

  // Reduce the partials in a fixed order; dB, dC in the input dtype (float16 / bfloat16
  // inputs: summed in float32, then rounded once). Dense (batch, groups, dstate, seqlen), or
  // for a constant B / C (groups, dstate) summed over the batch as well.
  auto reduce_bc = [&](const std::vector<T>& part, bool constant, void* dst) {
    if (!dst) return;
    auto reduce = [&](auto* out, auto convert) {
      if (constant) {  // (batch, dim, dpad) -> (dim, dstate)
        for (int64_t d = 0; d < p.dim; ++d)
          for (int64_t n = 0; n < p.dstate; ++n) {
            T s = 0;
            for (int64_t b = 0; b < p.batch; ++b) s += part[(b * p.dim + d) * w.dpad + n];
            out[d * p.dstate + n] = convert(s);
          }
        return;
      }
      for (int64_t bg = 0; bg < p.batch * p.n_groups; ++bg)
        for (int64_t n = 0; n < p.dstate; ++n)
          for (int64_t t = 0; t < p.seqlen; ++t) {
            T s = 0;
            for (int64_t k = 0; k < w.parts; ++k) s += part[((bg * w.parts + k) * p.seqlen + t) * w.dpad + n];
            out[(bg * p.dstate + n) * p.seqlen + t] = convert(s);
          }
    };
    if (p.input_type == ScanDType::kFloat16) reduce(static_cast<uint16_t*>(dst), float_to_half);
    else if (p.input_type == ScanDType::kBFloat16) reduce(static_cast<uint16_t*>(dst), float_to_bf16);
    else reduce(static_cast<T*>(dst), [](T v) { return v; });
  };
  reduce_bc(dBt, w.Bt_step == 0, p.dB);
  reduce_bc(dCt, w.Ct_step == 0, p.dC);
  if (p.dA) {
    T* out = static_cast<T*>(p.dA);  // dense (dim, dstate)
    for (int64_t d = 0; d < p.dim; ++d)
      for (int64_t n = 0; n < p.dstate; ++n) {
        T s = 0;
        for (int64_t b = 0; b < p.batch; ++b) s += dA[(b * p.dim + d) * w.dpad + n];
        out[d * p.dstate + n] = s;
      }
  }
  auto reduce_dim = [&](const std::vector<T>& part, void* dst) {
    if (!dst) return;
    T* out = static_cast<T*>(dst);
    for (int64_t d = 0; d < p.dim; ++d) {
      T s = 0;
      for (int64_t b = 0; b < p.batch; ++b) s += part[b * p.dim + d];
      out[d] = s;
    }
  };
  reduce_dim(dD, p.dD);
  reduce_dim(dbias, p.ddelta_bias);
}

}  // namespace

void selective_scan_fwd(const SelectiveScanParams& p, ParallelFor parallel_for, const LrpFactors& keep) {
  check_supported(p, /*allow_reduced=*/true);
  if (is_reduced(p.input_type) && keep.dt)
    throw std::invalid_argument("selective_scan CPU kernel: the MambaLRP factors are kept for float32/float64 inputs only");
  ScanWork w;
  w.lrp = keep;
  if (p.input_type == ScanDType::kFloat64) fwd_impl<double>(p, w, parallel_for);
  else fwd_impl<float>(p, w, parallel_for);
}

void selective_scan_bwd(const SelectiveScanBwdParams& p, ParallelFor parallel_for, const LrpFactors& factors) {
  check_supported(p, /*allow_reduced=*/true);
  if (is_reduced(p.input_type) && factors.dt)
    throw std::invalid_argument("selective_scan CPU backward: the MambaLRP factors are read for float32/float64 inputs only");
  if (p.z && !p.out_y) throw std::invalid_argument("selective_scan CPU backward: the pre-gate output is needed when z is given");
  if (factors.dt && p.rule != ScanRule::kMambaLRP)
    throw std::invalid_argument("selective_scan CPU backward: the forward's factors serve the MambaLRP rule only");
  ScanWork w;
  w.lrp = factors;
  if (p.input_type == ScanDType::kFloat64) bwd_impl<double>(p, w, parallel_for, false);
  else bwd_impl<float>(p, w, parallel_for, false);
}

void selective_scan_bwd_lrp_recompute(const SelectiveScanBwdParams& p, ParallelFor parallel_for, bool u_through_silu) {
  check_supported(p);
  if (p.rule != ScanRule::kMambaLRP)
    throw std::invalid_argument("selective_scan CPU recompute backward: MambaLRP rule only");
  ScanWork w;
  w.u_through_silu = u_through_silu;
  if (p.input_type == ScanDType::kFloat64) bwd_impl<double>(p, w, parallel_for, true);
  else bwd_impl<float>(p, w, parallel_for, true);
}

const char* selected_isa() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace cpu
}  // namespace kernels
}  // namespace mamba_lrp
