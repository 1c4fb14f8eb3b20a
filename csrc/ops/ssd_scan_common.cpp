#include "csrc/ops/ssd_scan_common.h"

#include <cstdlib>
#include <string>

#include "kernels/cpu/ssd_scan.h"

namespace mamba_lrp {
namespace ops {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + ")";
}

void check_like_x(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype (", x.scalar_type(),
              "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device (", x.device(), "), got ",
              t.device());
}

}  // namespace

SsdScanSizes check_ssd_scan_args(const char* op, const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D) {
  TORCH_CHECK(x.defined() && delta.defined() && A.defined() && B.defined() && C.defined(), op,
              ": x, delta, A, B and C must be tensors");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(delta.dim() == 3, op, ": delta must be (batch, heads, seqlen), got shape ", shape_of(delta));
  SsdScanSizes s;
  s.batch = delta.size(0), s.heads = delta.size(1), s.seqlen = delta.size(2);
  TORCH_CHECK(s.heads >= 1 && s.seqlen >= 1, op, ": delta must have at least one head and one step, got shape ",
              shape_of(delta));
  if (x.dim() == 3) {
    TORCH_CHECK(x.size(0) == s.batch && x.size(2) == s.seqlen && x.size(1) >= 1 && x.size(1) % s.heads == 0, op,
                ": x must be (batch, heads * head_dim, seqlen) = (", s.batch, ", a positive multiple of ", s.heads,
                ", ", s.seqlen, ") to match delta, got shape ", shape_of(x));
    s.head_dim = x.size(1) / s.heads;
    s.x4 = x.view({s.batch, s.heads, s.head_dim, s.seqlen});
  } else {
    TORCH_CHECK(x.dim() == 4 && x.size(0) == s.batch && x.size(1) == s.heads && x.size(3) == s.seqlen &&
                    x.size(2) >= 1,
                op, ": x must be (batch, heads * head_dim, seqlen) or (batch, heads, head_dim, seqlen) with (batch, ",
                "heads, seqlen) = (", s.batch, ", ", s.heads, ", ", s.seqlen, ") from delta, got shape ", shape_of(x));
    s.head_dim = x.size(2);
    s.x4 = x;
  }
  check_like_x(op, "delta", delta, x);
  TORCH_CHECK(A.dim() == 1 && A.size(0) == s.heads, op, ": A must be (heads) = (", s.heads, "), got shape ",
              shape_of(A));
  check_like_x(op, "A", A, x);
  TORCH_CHECK(B.dim() == 4 && B.size(0) == s.batch && B.size(3) == s.seqlen && B.size(1) >= 1 && B.size(2) >= 1,
              op, ": B must be (batch, groups, dstate, seqlen) with batch ", s.batch, " and seqlen ", s.seqlen,
              ", got shape ", shape_of(B));
  s.groups = B.size(1), s.dstate = B.size(2);
  TORCH_CHECK(s.heads % s.groups == 0, op, ": B's groups (", s.groups, ") must divide the number of heads (",
              s.heads, ")");
  TORCH_CHECK(C.sizes() == B.sizes(), op, ": C must have B's shape ", shape_of(B), ", got ", shape_of(C));
  check_like_x(op, "B", B, x);
  check_like_x(op, "C", C, x);
  if (D) {
    TORCH_CHECK(D->dim() == 1 && D->size(0) == s.heads, op, ": D must be (heads) = (", s.heads, "), got shape ",
                shape_of(*D));
    check_like_x(op, "D", *D, x);
  }
  return s;
}

bool ssd_rule_is_mambalrp(c10::string_view rule) {
  if (rule == "exact") return false;
  if (rule == "mambalrp") return true;
  TORCH_CHECK(false, "ssd_scan: rule must be \"exact\" or \"mambalrp\", got \"", std::string(rule), "\"");
}

void check_ssd_chunk_size(int64_t chunk_size) {
  TORCH_CHECK(chunk_size >= 0 && chunk_size <= kernels::cpu::kMaxSsdChunk,
              "ssd_scan: chunk_size must be 0 (automatic), 1 (per step) or 2 .. ", kernels::cpu::kMaxSsdChunk,
              " (chunked), got ", chunk_size);
}

int64_t resolve_ssd_chunk_size(int64_t chunk_size, int64_t seqlen) {
  check_ssd_chunk_size(chunk_size);
  if (chunk_size > 0) return chunk_size;
  static const int64_t forced = [] {
    const char* env = std::getenv("MAMBA_LRP_SSD_CHUNK");
    if (!env || !*env) return int64_t(0);
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    TORCH_CHECK(*end == '\0' && v >= 1 && v <= kernels::cpu::kMaxSsdChunk,
                "MAMBA_LRP_SSD_CHUNK must be an integer in [1, ", kernels::cpu::kMaxSsdChunk, "], got \"", env, "\"");
    return static_cast<int64_t>(v);
  }();
  if (forced > 0) return forced;
  return seqlen >= kSsdChunkedFromSeqlen ? kSsdAutoChunk : 1;
}

namespace {
void check_ssd_last_state_grad(const char* op, const at::Tensor& g, const SsdScanSizes& s, const at::Tensor& x) {
  TORCH_CHECK(g.dim() == 4 && g.size(0) == s.batch && g.size(1) == s.heads && g.size(2) == s.head_dim &&
                  g.size(3) == s.dstate,
              op, ": grad_last_state must be (batch, heads, head_dim, dstate) = (", s.batch, ", ", s.heads, ", ",
              s.head_dim, ", ", s.dstate, "), got shape ", shape_of(g));
  check_like_x(op, "grad_last_state", g, x);
}
}  // namespace

SsdScanSizes check_ssd_scan_call(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 int64_t chunk_size) {
  check_ssd_chunk_size(chunk_size);
  return check_ssd_scan_args("ssd_scan", x, delta, A, B, C, D);
}

SsdScanSizes check_ssd_transpose_call(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_last_state,
                                      const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                                      const at::Tensor& C, const c10::optional<at::Tensor>& D, int64_t chunk_size) {
  check_ssd_chunk_size(chunk_size);
  SsdScanSizes s = check_ssd_scan_args("_ssd_scan_transpose", grad_out, delta, A, B, C, D);
  if (grad_last_state) check_ssd_last_state_grad("_ssd_scan_transpose", *grad_last_state, s, grad_out);
  return s;
}

}  // namespace ops
}  // namespace mamba_lrp
