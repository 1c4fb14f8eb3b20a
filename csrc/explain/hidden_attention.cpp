#include "csrc/explain/hidden_attention.h"

#include <algorithm>

#include "csrc/ops.h"

namespace mamba_lrp {

at::Tensor traced_lm_forward(MambaForCausalLM& model, const at::Tensor& embeds, const at::Tensor& mask_f, int64_t pos,
                             std::vector<SsmTrace>* traces) {
  // The same computation as MambaForCausalLM in the standard mode, written out so that the
  // scan's inputs and output are at hand.
  const MambaConfig& c = model->config();
  const int64_t I = c.intermediate_size(), N = c.state_size(), R = c.time_step_rank(), K = c.conv_kernel();
  const int64_t L = embeds.size(1);
  const at::Tensor m3 = mask_f.defined() ? mask_f.unsqueeze(1) : at::Tensor();  // (B, 1, L)
  at::Tensor h = embeds;                                                          // (B, L, H)
  for (const auto& layer : *model->backbone->layers) {
    auto* block = layer->as<MambaBlock>();
    auto& mx = block->mixer;
    at::Tensor hn = block->norm->forward(h, false);                               // (B, L, H)
    const auto in_b = mx->in_proj->opt_bias();
    at::Tensor proj = at::linear(hn, mx->in_proj->weight, in_b ? *in_b : at::Tensor()).transpose(1, 2);  // (B, 2I, L)
    at::Tensor x = proj.narrow(1, 0, I), z = proj.narrow(1, I, I);               // (B, I, L)
    if (m3.defined()) x = x * m3;
    const auto conv_b = mx->conv1d->opt_bias();
    x = at::conv1d(x, mx->conv1d->weight, conv_b ? *conv_b : at::Tensor(), 1, K - 1, 1, I).narrow(2, 0, L);  // (B, I, L)
    x = at::silu(x);
    if (m3.defined()) x = x * m3;
    at::Tensor params = at::linear(x.transpose(1, 2), mx->x_proj->weight);        // (B, L, R+2N)
    at::Tensor dt = params.narrow(2, 0, R);                                       // (B, L, R)
    at::Tensor Bm = params.narrow(2, R, N).transpose(1, 2).contiguous();          // (B, N, L)
    at::Tensor Cm = params.narrow(2, R + N, N).transpose(1, 2).contiguous();      // (B, N, L)
    const auto dt_b = mx->dt_proj->opt_bias();
    at::Tensor delta = at::softplus(at::linear(dt, mx->dt_proj->weight, dt_b ? *dt_b : at::Tensor())).transpose(1, 2);  // (B, I, L)
    at::Tensor A = -at::exp(mx->A_log);                                           // (I, N)
    at::Tensor y = std::get<0>(selective_scan(x, delta, A, Bm, Cm, mx->D, c10::nullopt, c10::nullopt, false, false, "exact"));  // (B, I, L)
    if (traces) traces->push_back({x.detach(), delta.detach(), A.detach(), Bm.detach(), Cm.detach(), y});
    at::Tensor out = y * at::silu(z);                                             // (B, I, L)
    const auto out_b = mx->out_proj->opt_bias();
    h = h + at::linear(out.transpose(1, 2), mx->out_proj->weight, out_b ? *out_b : at::Tensor());  // (B, L, H)
  }
  h = model->backbone->norm_f->forward(h, false);                                 // (B, L, H)
  return model->head(h.select(1, pos));                                           // (B, V)
}

at::Tensor reduced_hidden_attention(const SsmTrace& tr, ChannelReduce how, const at::Tensor& grad_y,
                                    int64_t max_elements) {
  const int64_t batch = tr.u.size(0), I = tr.u.size(1), L = tr.u.size(2), N = tr.A.size(1);
  const at::Tensor P = tr.delta.cumsum(2).reshape({batch * I, L});                       // (BI, L)
  const at::Tensor delta = tr.delta.reshape({batch * I, L});                             // (BI, L)
  const at::Tensor A = tr.A.unsqueeze(0).expand({batch, I, N}).reshape({batch * I, N});  // (BI, N)
  const at::Tensor row_of = at::arange(batch, at::TensorOptions().dtype(at::kLong).device(tr.u.device()))
                                .repeat_interleave(I);                                   // (BI)
  const at::Tensor causal = at::ones({L, L}, at::TensorOptions().dtype(at::kBool).device(tr.u.device())).tril();  // (L, L) s <= t
  at::Tensor grad_flat, u_flat;
  if (how == ChannelReduce::kMeanGradPositive) {
    grad_flat = grad_y.reshape({batch * I, L});
    u_flat = tr.u.reshape({batch * I, L});
  }
  at::Tensor out = at::zeros({batch, L, L}, tr.u.options());                             // (B, L, L)
  const int64_t per_pair = std::max<int64_t>(1, N * L * L);
  const int64_t block = std::max<int64_t>(1, max_elements / per_pair);
  for (int64_t p0 = 0; p0 < batch * I; p0 += block) {
    const int64_t np = std::min(block, batch * I - p0);
    const at::Tensor rows = row_of.narrow(0, p0, np);                                    // (np)
    const at::Tensor Pp = P.narrow(0, p0, np);                                           // (np, L)
    // P[t] - P[s] for s <= t, 0 above the diagonal (masked afterwards; keeps exp finite).
    const at::Tensor diff = (Pp.unsqueeze(2) - Pp.unsqueeze(1)).masked_fill(causal.logical_not(), 0);  // (np, t, s)
    const at::Tensor decay = at::exp(A.narrow(0, p0, np).unsqueeze(2).unsqueeze(3) * diff.unsqueeze(1));  // (np, N, t, s)
    const at::Tensor Cb = tr.C.index_select(0, rows);                                    // (np, N, L)
    const at::Tensor Bb = tr.B.index_select(0, rows) * delta.narrow(0, p0, np).unsqueeze(1);  // (np, N, s): delta_s B_s
    at::Tensor alpha = (Cb.unsqueeze(3) * decay * Bb.unsqueeze(2)).sum(1);               // (np, t, s)
    alpha = alpha.masked_fill(causal.logical_not(), 0);
    at::Tensor contrib;
    if (how == ChannelReduce::kMeanAbs) {
      contrib = alpha.abs();
    } else {
      const at::Tensor g = grad_flat.narrow(0, p0, np).unsqueeze(2) * u_flat.narrow(0, p0, np).unsqueeze(1);  // (np, t, s)
      contrib = (g * alpha).clamp_min(0);
    }
    out.index_add_(0, rows, contrib);
  }
  return out / static_cast<double>(I);
}

at::Tensor attention_rollout(const std::vector<at::Tensor>& layers) {
  const at::Tensor& first = layers.at(0);
  const at::Tensor eye = at::eye(first.size(1), first.options()).unsqueeze(0);  // (1, L, L)
  at::Tensor joint = eye.expand_as(first).clone();                              // (B, L, L)
  for (const auto& a : layers) {
    at::Tensor m = a + eye;
    m = m / m.sum(-1, true);
    joint = at::bmm(m, joint);
  }
  return joint;
}

at::Tensor gradient_rollout(const std::vector<at::Tensor>& layers) {
  const at::Tensor& first = layers.at(0);
  at::Tensor r = at::eye(first.size(1), first.options()).unsqueeze(0).expand_as(first).clone();  // (B, L, L)
  for (const auto& a : layers) r = r + at::bmm(a, r);
  return r;
}

}  // namespace mamba_lrp
