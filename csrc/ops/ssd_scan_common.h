// Argument validation of the Mamba-2 (SSD) scan ops, shared by the CPU kernel, the ATen
// composite and the autograd kernel, so every backend accepts and refuses the same inputs.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>

namespace mamba_lrp {
namespace ops {

// The sizes of one call. x may be (batch, heads * head_dim, seqlen) or (batch, heads,
// head_dim, seqlen); x4 is it viewed as the latter.
struct SsdScanSizes {
  int64_t batch = 0, heads = 0, head_dim = 0, seqlen = 0, groups = 0, dstate = 0;
  at::Tensor x4;
};

// Checks x, delta, A, B, C, D (shapes, dtype float32/float64 and the same for all, device,
// values of the sizes); every failure names the argument and what was expected. `op` is
// the name in the messages.
SsdScanSizes check_ssd_scan_args(const char* op, const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D);

// rule "exact" or "mambalrp" (true for mambalrp); anything else is an error naming the argument.
bool ssd_rule_is_mambalrp(c10::string_view rule);

// chunk_size: 0 (automatic), 1 (the per-step form) or 2 .. kernels::cpu::kMaxSsdChunk (the
// chunked form with chunks of that many steps); anything else is an error.
void check_ssd_chunk_size(int64_t chunk_size);

// What 0 (automatic) resolves to: the environment variable MAMBA_LRP_SSD_CHUNK (an integer
// as chunk_size takes, > 0) when set, else by length on the CPU (measured, README "Mamba-2
// (SSD) models"): the per-step form below kSsdChunkedFromSeqlen steps, where the two are
// about even, the chunked form with chunks of kSsdAutoChunk from there on (at the Mamba-2
// 130M mixer's shape: 1.6-2x at 16 steps, 2.2-3x at 512 and 2048, 2.8-3.4x at 4096).
constexpr int64_t kSsdAutoChunk = 64;
constexpr int64_t kSsdChunkedFromSeqlen = 16;
int64_t resolve_ssd_chunk_size(int64_t chunk_size, int64_t seqlen);
// The chunk of the ATen composite (other devices), which has no per-step form.
constexpr int64_t kSsdDefaultChunk = 64;

// Everything each backend checks on entry, in one call per op: ssd_scan's arguments and
// chunk_size; _ssd_scan_transpose's, with grad_out in x's place and the gradient of the last
// state (batch, heads, head_dim, dstate) in grad_out's dtype and on its device.
SsdScanSizes check_ssd_scan_call(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 int64_t chunk_size);
SsdScanSizes check_ssd_transpose_call(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_last_state,
                                      const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                      const at::Tensor& C, const c10::optional<at::Tensor>& D, int64_t chunk_size);

}  // namespace ops
}  // namespace mamba_lrp
