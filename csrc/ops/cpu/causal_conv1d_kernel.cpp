// CPU kernels of _causal_conv1d_silu and _causal_conv1d_input_grad (kernels/cpu/causal_conv1d)
// for float32/float64 with a (C, 1, K) depthwise weight and a (C) bias; any other input goes
// to the ATen composite, which also reports mismatched shapes.
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/cpu/parallel_for.h"
#include "csrc/ops/ops.h"
#include "kernels/cpu/causal_conv1d.h"

namespace mamba_lrp {
namespace ops {
namespace {

bool kernel_applies(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias) {
  const auto t = x.scalar_type();
  return (t == at::kFloat || t == at::kDouble) && weight.scalar_type() == t && x.dim() == 3 && weight.dim() == 3 &&
         weight.size(0) == x.size(1) && weight.size(1) == 1 && weight.device() == x.device() &&
         (!bias || (bias->device() == x.device() && bias->scalar_type() == t && bias->dim() == 1 &&
                    bias->size(0) == x.size(1)));
}

std::tuple<OptTensor, OptTensor, OptTensor> causal_conv1d_silu_cpu(const at::Tensor& x_in, const at::Tensor& weight_in,
                                                                   const OptTensor& bias, int64_t outputs) {
  composite::check_conv_silu_outputs(outputs);
  if (!kernel_applies(x_in, weight_in, bias)) return composite::causal_conv1d_silu(x_in, weight_in, bias, outputs);
  const at::Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const auto dense = x.options().memory_format(at::MemoryFormat::Contiguous);
  OptTensor conv, silu, sigmoid;
  if (outputs & kConv) conv = at::empty(x.sizes(), dense);
  if (outputs & kSilu) silu = at::empty(x.sizes(), dense);
  if (outputs & kSigmoid) sigmoid = at::empty(x.sizes(), dense);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_silu", [&] {
    kernels::cpu::CausalConv1dParams<scalar_t> p;
    p.batch = x.size(0), p.channels = x.size(1), p.seqlen = x.size(2), p.width = weight.size(-1);
    p.x = x.data_ptr<scalar_t>(), p.x_batch_stride = x.stride(0), p.x_channel_stride = x.stride(1);
    p.weight = weight.data_ptr<scalar_t>();
    p.bias = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    p.out = conv ? conv->data_ptr<scalar_t>() : nullptr;
    p.silu = silu ? silu->data_ptr<scalar_t>() : nullptr;
    p.sigmoid = sigmoid ? sigmoid->data_ptr<scalar_t>() : nullptr;
    kernels::cpu::causal_conv1d_fwd(p, aten_parallel_for);
  });
  return {conv, silu, sigmoid};
}

at::Tensor causal_conv1d_input_grad_cpu(const at::Tensor& grad_out_in, const OptTensor& scale_in,
                                        const at::Tensor& weight_in, bool overwrite_grad_out) {
  if (!kernel_applies(grad_out_in, weight_in, c10::nullopt) ||
      (scale_in && (scale_in->device() != grad_out_in.device() ||
                    scale_in->scalar_type() != grad_out_in.scalar_type() || scale_in->sizes() != grad_out_in.sizes())))
    return composite::causal_conv1d_input_grad(grad_out_in, scale_in, weight_in, overwrite_grad_out);
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor scale = scale_in ? scale_in->contiguous() : at::Tensor();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor grad_x = overwrite_grad_out ? grad_out : at::empty(grad_out.sizes(), grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "causal_conv1d_input_grad", [&] {
    kernels::cpu::CausalConv1dBwdParams<scalar_t> p;
    p.batch = grad_out.size(0), p.channels = grad_out.size(1), p.seqlen = grad_out.size(2), p.width = weight.size(-1);
    p.grad_out = grad_out.data_ptr<scalar_t>();
    p.scale = scale.defined() ? scale.data_ptr<scalar_t>() : nullptr;
    p.weight = weight.data_ptr<scalar_t>();
    p.grad_x = grad_x.data_ptr<scalar_t>();
    kernels::cpu::causal_conv1d_bwd(p, aten_parallel_for);
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(mamba_lrp, CPU, m) {
  m.impl("_causal_conv1d_silu", TORCH_FN(causal_conv1d_silu_cpu));
  m.impl("_causal_conv1d_input_grad", TORCH_FN(causal_conv1d_input_grad_cpu));
}

}  // namespace ops
}  // namespace mamba_lrp
