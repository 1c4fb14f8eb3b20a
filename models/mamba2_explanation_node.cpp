// The Mamba-2 mixer as one autograd node for the default explanation (models/mamba2.h,
// mamba2_mixer_explanation_node). Its backward is what the composition of rule ops computes
// under every MambaLRP rule with LRP-0 on in_proj, conv1d and out_proj:
//   g_v  = out_proj's input gradient                         (LRP-0: the plain gradient)
//   g_vg = g_v * weight * rsqrt(mean_group(v^2) + eps)        (gated norm, rsqrt constant)
//   g_y  = g_vg * silu(z) / 2,  g_z = g_vg * y / 2 * sigmoid(z)   (half rule; SiLU identity on z)
//   g_x  = the scan's transpose of g_y                        (SSM rule: Delta, B, C constant)
//   g_c  = g_x * sigmoid(c) at the conv output c of the x channels (SiLU identity), the conv's
//          input gradient of it, masked as the forward masks
//   g_hidden = [g_z | g_xpre] through in_proj's rows [0, 2I)  (B, C and dt get no gradient)
#include <torch/autograd.h>

#include "csrc/ops/ops.h"
#include "models/channel_layout.h"
#include "models/mamba2.h"

namespace mamba_lrp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor dense_copy(const at::Tensor& t) { return t.clone(at::MemoryFormat::Contiguous); }
c10::IValue opt_rows(const c10::optional<at::Tensor>& t, int64_t n) {
  return t ? c10::IValue(t->narrow(0, 0, n)) : c10::IValue();
}

class ExplanationNode : public torch::autograd::Function<ExplanationNode> {
 public:
  // mask: optional, as autograd Functions do not take undefined tensors. Grad mode is off here.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const c10::optional<at::Tensor>& mask,
                            Mamba2MixerImpl* mixer, bool recompute) {
    const PropagationContext plain;
    const at::Tensor m = mask ? *mask : at::Tensor();
    const Mamba2MixerImpl::ScanParts s = mixer->scan_parts(hidden, m, plain, /*conv_sigmoid=*/!recompute);
    at::Tensor norm_rsqrt;  // the gated norm's rsqrt, constant under the rule: kept (B, G, 1, L)
    const at::Tensor out = mixer->gated_out(s.y, s.z, plain, &norm_rsqrt);
    // B and C are views of the conv's whole output: copies, so that it is not kept alive.
    // Kept: hidden (recompute) or z and the conv's sigmoid (keep), and the norm's rsqrt.
    ctx->save_for_backward({recompute ? hidden : at::Tensor(), m, s.y, s.delta, dense_copy(s.B), dense_copy(s.C), s.A,
                            recompute ? at::Tensor() : s.z, s.conv_sigmoid, norm_rsqrt});
    const int64_t I = mixer->config().intermediate_size();
    ctx->saved_data["zx_weight"] = mixer->in_proj->weight.narrow(0, 0, 2 * I);  // [z | x] rows
    ctx->saved_data["zx_bias"] = opt_rows(mixer->in_proj->opt_bias(), 2 * I);
    ctx->saved_data["conv_weight"] = mixer->conv1d->weight.narrow(0, 0, I);     // the x channels
    ctx->saved_data["conv_bias"] = opt_rows(mixer->conv1d->opt_bias(), I);
    ctx->saved_data["norm_weight"] = mixer->norm->weight;
    ctx->saved_data["out_weight"] = mixer->out_proj->weight;
    ctx->saved_data["D"] = mixer->D;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::NoGradGuard plain_layers;  // recomputed without recording, also under create_graph
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &mask = saved[1], &y = saved[2];
    const at::Tensor zx_weight = ctx->saved_data["zx_weight"].toTensor();
    const at::Tensor conv_weight = ctx->saved_data["conv_weight"].toTensor();
    const int64_t batch = y.size(0), I = y.size(1), L = y.size(2), G = saved[9].size(1);
    const rules::LayerRule lrp0;
    if (!grads[0].defined()) return {at::zeros({batch, L, zx_weight.size(1)}, y.options()), {}, {}, {}};
    const at::Tensor m3 = mask.defined() ? mask.unsqueeze(1).to(y.scalar_type()) : at::Tensor();

    at::Tensor z = saved[7], sig_c = saved[8];
    if (!z.defined()) {
      // Recompute: z and the conv of the x channels again (one product for both), as the forward had them.
      const at::Tensor zx = linear_to_channels(hidden, zx_weight,
                                               ctx->saved_data["zx_bias"].toOptional<at::Tensor>(), lrp0);  // (B, 2I, L)
      z = zx.narrow(1, 0, I);
      at::Tensor xpre = zx.narrow(1, I, I);
      if (m3.defined()) xpre = xpre * m3;
      sig_c = ops::_causal_conv1d_silu(xpre, conv_weight, ctx->saved_data["conv_bias"].toOptional<at::Tensor>(),
                                       ops::kSigmoid).sigmoid;                     // (B, I, L)
    }

    // Through out_proj and the gated norm, channel-major. In place where a tensor is this
    // backward's own: each pass over a (B, I, L) tensor costs about as much as the scan here.
    at::Tensor g_v = linear_on_channels(grads[0].transpose(1, 2), ctx->saved_data["out_weight"].toTensor().t(),
                                        c10::nullopt, lrp0);                       // (B, I, L)
    const std::vector<int64_t> grouped{batch, G, I / G, L};
    const at::Tensor sig_z = at::sigmoid(z);
    at::Tensor gate = z * sig_z;                                                   // silu(z)
    g_v.mul_(ctx->saved_data["norm_weight"].toTensor().view({1, I, 1}));
    g_v.view(grouped).mul_(saved[9] * 0.5);                                        // g_vg / 2
    at::Tensor g_zx = at::empty({batch, 2 * I, L}, y.options());                  // [g_z | g_xpre]
    at::Tensor g_z = g_zx.narrow(1, 0, I);
    at::mul_out(g_z, g_v, y).mul_(sig_z);
    const at::Tensor g_y = gate.mul_(g_v);

    // The scan's transpose, then the SiLU identity and the conv's input gradient, masked.
    at::Tensor g_x = ops::_ssd_scan_transpose(g_y, c10::nullopt, saved[3], saved[6], saved[4], saved[5],
                                              ctx->saved_data["D"].toTensor(), 0);  // (B, I, L)
    if (m3.defined()) g_x.mul_(m3);
    at::Tensor g_xpre = g_zx.narrow(1, I, I);
    g_xpre.copy_(ops::_causal_conv1d_input_grad(g_x, sig_c, conv_weight, /*overwrite_grad_out=*/true));
    if (m3.defined()) g_xpre.mul_(m3);

    // in_proj's rows [0, 2I) back to the mixer's input: (B, L, 2I) x (2I, H).
    const at::Tensor w = zx_weight.unsqueeze(0).expand({batch, 2 * I, zx_weight.size(1)});
    return {at::bmm(g_zx.transpose(1, 2), w), at::Tensor(), at::Tensor(), at::Tensor()};  // (B, L, H)
  }
};

}  // namespace

at::Tensor mamba2_mixer_explanation_node(Mamba2MixerImpl& mixer, const at::Tensor& hidden, const at::Tensor& mask,
                                         bool recompute) {
  return ExplanationNode::apply(hidden, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt, &mixer,
                                recompute);
}

}  // namespace mamba_lrp
