// CPU kernels of ssd_scan (below autograd) and _ssd_scan_transpose (its MambaLRP backward):
// kernels/cpu/ssd_scan, per-step or chunked as chunk_size says (0: by length).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "csrc/ops/cpu/parallel_for.h"
#include "csrc/ops/ops.h"
#include "csrc/ops/ssd_scan_common.h"
#include "kernels/cpu/ssd_scan.h"

namespace mamba_lrp {
namespace ops {
namespace {

at::Tensor unit_last(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

// Runs the kernel on x4 (batch, heads, head_dim, seqlen): the forward, or with `transpose`
// the transpose (x4 then holds the output gradient, init the last state's gradient).
std::tuple<at::Tensor, OptTensor> run_kernel(const SsdScanSizes& s, const at::Tensor& x4_in, const at::Tensor& delta_in,
                                             const at::Tensor& A_in, const at::Tensor& B_in, const at::Tensor& C_in,
                                             const OptTensor& D_in, bool transpose, const at::Tensor& init_in,
                                             bool return_last_state, int64_t chunk_size) {
  const at::Tensor x4 = unit_last(x4_in), delta = unit_last(delta_in), B = unit_last(B_in), C = unit_last(C_in);
  const at::Tensor A = A_in.contiguous();
  const at::Tensor D = D_in ? D_in->contiguous() : at::Tensor();
  const at::Tensor init = init_in.defined() ? init_in.contiguous() : at::Tensor();
  at::Tensor out = at::empty({s.batch, s.heads, s.head_dim, s.seqlen}, x4.options());
  OptTensor last;
  if (return_last_state) last = at::empty({s.batch, s.heads, s.head_dim, s.dstate}, x4.options());
  AT_DISPATCH_FLOATING_TYPES(x4.scalar_type(), "ssd_scan", [&] {
    kernels::cpu::SsdScanParams<scalar_t> p;
    p.batch = s.batch, p.heads = s.heads, p.head_dim = s.head_dim, p.seqlen = s.seqlen;
    p.groups = s.groups, p.dstate = s.dstate;
    p.chunk = resolve_ssd_chunk_size(chunk_size, s.seqlen);
    p.transpose = transpose;
    p.threads = at::get_num_threads();
    p.x = x4.data_ptr<scalar_t>();
    p.x_batch_stride = x4.stride(0), p.x_head_stride = x4.stride(1), p.x_dim_stride = x4.stride(2);
    p.delta = delta.data_ptr<scalar_t>(), p.delta_batch_stride = delta.stride(0), p.delta_head_stride = delta.stride(1);
    p.A = A.data_ptr<scalar_t>();
    p.B = B.data_ptr<scalar_t>();
    p.B_batch_stride = B.stride(0), p.B_group_stride = B.stride(1), p.B_state_stride = B.stride(2);
    p.C = C.data_ptr<scalar_t>();
    p.C_batch_stride = C.stride(0), p.C_group_stride = C.stride(1), p.C_state_stride = C.stride(2);
    if (D.defined()) p.D = D.data_ptr<scalar_t>();
    p.out = out.data_ptr<scalar_t>();
    p.out_batch_stride = out.stride(0), p.out_head_stride = out.stride(1), p.out_dim_stride = out.stride(2);
    if (last) p.last_state = last->data_ptr<scalar_t>();
    if (init.defined()) p.init_state = init.data_ptr<scalar_t>();
    kernels::cpu::ssd_scan(p, aten_parallel_for);
  });
  return {out, last};
}

std::tuple<at::Tensor, OptTensor> ssd_scan_cpu(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                               const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                               bool return_last_state, c10::string_view rule, int64_t chunk_size) {
  ssd_rule_is_mambalrp(rule);  // both rules have this forward; refuse another
  const SsdScanSizes s = check_ssd_scan_call(x, delta, A, B, C, D, chunk_size);
  auto [out, last] = run_kernel(s, s.x4, delta, A, B, C, D, false, at::Tensor(), return_last_state, chunk_size);
  return {out.view(x.sizes()), last};
}

at::Tensor ssd_scan_transpose_cpu(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& delta,
                                  const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                  int64_t chunk_size) {
  const SsdScanSizes s = check_ssd_transpose_call(grad_out, grad_last_state, delta, A, B, C, D, chunk_size);
  auto [dx, unused] = run_kernel(s, s.x4, delta, A, B, C, D, true,
                                 grad_last_state ? *grad_last_state : at::Tensor(), false, chunk_size);
  return dx.view(grad_out.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("ssd_scan", TORCH_FN(ssd_scan_cpu));
  m.impl("_ssd_scan_transpose", TORCH_FN(ssd_scan_transpose_cpu));
}

}  // namespace ops
}  // namespace mamba_lrp
