// CPU kernels of _flip_add and _flip_add_into (kernels/cpu/flip_add, one pass) for float32/
// float64 with a unit-stride out; any other input goes to the ATen composite.
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/cpu/parallel_for.h"
#include "csrc/ops/ops.h"
#include "kernels/cpu/flip_add.h"

namespace mamba_lrp {
namespace ops {
namespace {

void flip_add_into_cpu(const at::Tensor& out, const at::Tensor& x_in, const OptTensor& a_in, double scale) {
  composite::check_flip_add_args(out, x_in, a_in);
  const auto t = x_in.scalar_type();
  const bool kernel = (t == at::kFloat || t == at::kDouble) && out.scalar_type() == t && out.stride(2) == 1 &&
                      out.device() == x_in.device() &&
                      (!a_in || (a_in->scalar_type() == t && a_in->device() == x_in.device()));
  if (!kernel) return composite::flip_add_into(out, x_in, a_in, scale);
  const at::Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  const at::Tensor a = !a_in ? at::Tensor() : a_in->stride(2) == 1 ? *a_in : a_in->contiguous();
  AT_DISPATCH_FLOATING_TYPES(t, "flip_add", [&] {
    kernels::cpu::FlipAddParams<scalar_t> p;
    p.batch = x.size(0), p.channels = x.size(1), p.seqlen = x.size(2);
    p.x = x.data_ptr<scalar_t>(), p.x_batch_stride = x.stride(0), p.x_channel_stride = x.stride(1);
    if (a.defined()) p.a = a.data_ptr<scalar_t>(), p.a_batch_stride = a.stride(0), p.a_channel_stride = a.stride(1);
    p.out = out.data_ptr<scalar_t>(), p.out_batch_stride = out.stride(0), p.out_channel_stride = out.stride(1);
    p.scale = static_cast<scalar_t>(scale);
    kernels::cpu::flip_add(p, aten_parallel_for);
  });
}

at::Tensor flip_add_cpu(const at::Tensor& x, const OptTensor& a, double scale) {
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  flip_add_into_cpu(out, x, a, scale);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_flip_add", TORCH_FN(flip_add_cpu));
  m.impl("_flip_add_into", TORCH_FN(flip_add_into_cpu));
}

}  // namespace ops
}  // namespace mamba_lrp
