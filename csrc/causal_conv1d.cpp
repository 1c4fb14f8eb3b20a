#include "csrc/causal_conv1d.h"

#include "csrc/cpu/parallel_for.h"
#include "kernels/cpu/causal_conv1d.h"

namespace mamba_lrp {
namespace {

// The kernel's case: CPU, float32/float64 throughout, a (C, 1, K) depthwise weight and a
// (C) bias. Anything else goes to ATen, which also reports mismatched shapes.
bool kernel_applies(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  const auto t = x.scalar_type();
  return x.device().is_cpu() && weight.device().is_cpu() && (t == at::kFloat || t == at::kDouble) &&
         weight.scalar_type() == t && x.dim() == 3 && weight.dim() == 3 && weight.size(0) == x.size(1) &&
         weight.size(1) == 1 &&
         (!bias || (bias->device().is_cpu() && bias->scalar_type() == t && bias->dim() == 1 &&
                    bias->size(0) == x.size(1)));
}

}  // namespace

ConvSiluParts causal_conv1d_silu(const at::Tensor& x_in, const at::Tensor& weight_in,
                                 const c10::optional<at::Tensor>& bias, bool conv, bool silu, bool sigmoid) {
  TORCH_CHECK(conv || silu || sigmoid, "causal_conv1d_silu: no output asked for");
  const int64_t K = weight_in.size(-1);
  ConvSiluParts parts;
  if (!kernel_applies(x_in, weight_in, bias)) {
    const at::Tensor c = at::conv1d(at::constant_pad_nd(x_in, {K - 1, 0}), weight_in, bias ? *bias : at::Tensor(),
                                    /*stride=*/{1}, /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, x_in.size(1));
    if (conv) parts.conv = c;
    if (silu) parts.silu = at::silu(c);
    if (sigmoid) parts.sigmoid = at::sigmoid(c);
    return parts;
  }
  const at::Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const auto dense = x.options().memory_format(at::MemoryFormat::Contiguous);
  if (conv) parts.conv = at::empty(x.sizes(), dense);
  if (silu) parts.silu = at::empty(x.sizes(), dense);
  if (sigmoid) parts.sigmoid = at::empty(x.sizes(), dense);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_silu", [&] {
    kernels::cpu::CausalConv1dParams<scalar_t> p;
    p.batch = x.size(0), p.channels = x.size(1), p.seqlen = x.size(2), p.width = K;
    p.x = x.data_ptr<scalar_t>(), p.x_batch_stride = x.stride(0), p.x_channel_stride = x.stride(1);
    p.weight = weight.data_ptr<scalar_t>();
    p.bias = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    p.out = conv ? parts.conv.data_ptr<scalar_t>() : nullptr;
    p.silu = silu ? parts.silu.data_ptr<scalar_t>() : nullptr;
    p.sigmoid = sigmoid ? parts.sigmoid.data_ptr<scalar_t>() : nullptr;
    kernels::cpu::causal_conv1d_fwd(p, aten_parallel_for);
  });
  return parts;
}

at::Tensor causal_conv1d_input_grad(const at::Tensor& grad_out_in, const c10::optional<at::Tensor>& scale_in,
                                    const at::Tensor& weight_in, bool overwrite_grad_out) {
  const int64_t K = weight_in.size(-1);
  if (!kernel_applies(grad_out_in, weight_in, c10::nullopt) ||
      (scale_in && (!scale_in->device().is_cpu() || scale_in->scalar_type() != grad_out_in.scalar_type() ||
                    scale_in->sizes() != grad_out_in.sizes()))) {
    // A conv of the right-padded gradient with the flipped kernel.
    const at::Tensor g = scale_in ? grad_out_in * *scale_in : grad_out_in;
    return at::conv1d(at::constant_pad_nd(g, {0, K - 1}), weight_in.flip({2}), at::Tensor(), /*stride=*/{1},
                      /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, grad_out_in.size(1));
  }
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor scale = scale_in ? scale_in->contiguous() : at::Tensor();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor grad_x = overwrite_grad_out ? grad_out : at::empty(grad_out.sizes(), grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "causal_conv1d_input_grad", [&] {
    kernels::cpu::CausalConv1dBwdParams<scalar_t> p;
    p.batch = grad_out.size(0), p.channels = grad_out.size(1), p.seqlen = grad_out.size(2), p.width = K;
    p.grad_out = grad_out.data_ptr<scalar_t>();
    p.scale = scale.defined() ? scale.data_ptr<scalar_t>() : nullptr;
    p.weight = weight.data_ptr<scalar_t>();
    p.grad_x = grad_x.data_ptr<scalar_t>();
    kernels::cpu::causal_conv1d_bwd(p, aten_parallel_for);
  });
  return grad_x;
}

}  // namespace mamba_lrp
