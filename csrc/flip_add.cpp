#include "csrc/flip_add.h"

#include "csrc/cpu/parallel_for.h"
#include "kernels/cpu/flip_add.h"

namespace mamba_lrp {

void flip_add_into(const at::Tensor& out, const at::Tensor& x_in, const c10::optional<at::Tensor>& a_in,
                   double scale) {
  TORCH_CHECK(x_in.dim() == 3 && out.sizes() == x_in.sizes() && (!a_in || a_in->sizes() == x_in.sizes()),
              "flip_add: x, a and out must be (B, C, L) of one shape");
  const auto t = x_in.scalar_type();
  const bool kernel = out.device().is_cpu() && x_in.device().is_cpu() && (!a_in || a_in->device().is_cpu()) &&
                      (t == at::kFloat || t == at::kDouble) && out.scalar_type() == t &&
                      (!a_in || a_in->scalar_type() == t) && out.stride(2) == 1;
  if (!kernel) {
    at::Tensor r = a_in ? *a_in + x_in.flip({2}) : x_in.flip({2});
    out.copy_(scale == 1.0 ? r : r * scale);
    return;
  }
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

at::Tensor flip_add(const at::Tensor& x, const c10::optional<at::Tensor>& a, double scale) {
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  flip_add_into(out, x, a, scale);
  return out;
}

}  // namespace mamba_lrp
