// The sequence ops around the scan in ATen: the causal conv1d with its SiLU, the conv's input
// gradient, and flip-add. For devices without a kernel of their own, and for the dtypes and
// shapes the CPU kernels leave to ATen (which also reports what does not fit).
#include <torch/library.h>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace ops {
namespace composite {

void check_conv_silu_outputs(int64_t outputs) {
  TORCH_CHECK(outputs > 0 && (outputs & ~int64_t(kConv | kSilu | kSigmoid)) == 0,
              "_causal_conv1d_silu: outputs must combine kConv (1), kSilu (2) and kSigmoid (4), got ", outputs);
}

std::tuple<OptTensor, OptTensor, OptTensor> causal_conv1d_silu(const at::Tensor& x, const at::Tensor& weight,
                                                               const OptTensor& bias, int64_t outputs) {
  check_conv_silu_outputs(outputs);
  // Causal: K-1 zeros on the left only, so the output is as long as the input.
  const int64_t K = weight.size(-1);
  const at::Tensor c = at::conv1d(at::constant_pad_nd(x, {K - 1, 0}), weight, bias ? *bias : at::Tensor(),
                                  /*stride=*/{1}, /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, x.size(1));
  OptTensor conv, silu, sigmoid;
  if (outputs & kConv) conv = c;
  if (outputs & kSilu) silu = at::silu(c);
  if (outputs & kSigmoid) sigmoid = at::sigmoid(c);
  return {conv, silu, sigmoid};
}

at::Tensor causal_conv1d_input_grad(const at::Tensor& grad_out, const OptTensor& scale, const at::Tensor& weight,
                                    bool overwrite_grad_out) {
  // A conv of the right-padded gradient with the flipped kernel.
  const int64_t K = weight.size(-1);
  const at::Tensor g = scale ? grad_out * *scale : grad_out;
  return at::conv1d(at::constant_pad_nd(g, {0, K - 1}), weight.flip({2}), at::Tensor(), /*stride=*/{1},
                    /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, grad_out.size(1));
}

void check_flip_add_args(const at::Tensor& out, const at::Tensor& x, const OptTensor& a) {
  TORCH_CHECK(x.dim() == 3 && out.sizes() == x.sizes() && (!a || a->sizes() == x.sizes()),
              "flip_add: x, a and out must be (B, C, L) of one shape");
}

void flip_add_into(const at::Tensor& out, const at::Tensor& x, const OptTensor& a, double scale) {
  check_flip_add_args(out, x, a);
  const at::Tensor r = a ? *a + x.flip({2}) : x.flip({2});
  out.copy_(scale == 1.0 ? r : r * scale);
}

at::Tensor flip_add(const at::Tensor& x, const OptTensor& a, double scale) {
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  flip_add_into(out, x, a, scale);
  return out;
}

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("_causal_conv1d_silu", TORCH_FN(causal_conv1d_silu));
  m.impl("_causal_conv1d_input_grad", TORCH_FN(causal_conv1d_input_grad));
  m.impl("_flip_add", TORCH_FN(flip_add));
  m.impl("_flip_add_into", TORCH_FN(flip_add_into));
}

}  // namespace composite
}  // namespace ops
}  // namespace mamba_lrp
