#include "csrc/app/explain/hidden_attention.h"

#include <algorithm>

#include "csrc/io/errors.h"

namespace mamba_lrp {

namespace {
// Sets a model's trace for one forward pass.
template <typename Model>
struct ScopedTrace {
  ScopedTrace(Model& m, std::vector<SsmTrace>* traces) : m_(m) { m_->set_trace(traces); }
  ~ScopedTrace() { m_->set_trace(nullptr); }
  Model& m_;
};
}  // namespace

at::Tensor traced_lm_forward(MambaForCausalLM& model, const at::Tensor& embeds, const at::Tensor& mask_f, int64_t pos,
                             std::vector<SsmTrace>* traces) {
  ScopedTrace<MambaForCausalLM> scoped(model, traces);
  return model->head(model->hidden_states(embeds, mask_f).select(1, pos));  // (B, V)
}

at::Tensor traced_vim_forward(VisionMamba& model, const at::Tensor& tokens, std::vector<SsmTrace>* traces) {
  ScopedTrace<VisionMamba> scoped(model, traces);
  return model->forward_tokens(tokens);  // (B, classes)
}

std::vector<at::Tensor> vim_layer_attention(const VimConfig& cfg, const std::vector<at::Tensor>& branches) {
  const size_t per_layer = cfg.bidirectional() ? 2 : 1;
  TORCH_CHECK(branches.size() == per_layer * static_cast<size_t>(cfg.depth()), "vim_layer_attention: expected ",
              per_layer * cfg.depth(), " branch attentions, got ", branches.size());
  std::vector<at::Tensor> layers;
  for (size_t l = 0; l < branches.size(); l += per_layer) {
    at::Tensor a = branches[l];                                        // (B, L, L) causal
    if (per_layer == 2) {
      a = a + branches[l + 1].flip({1, 2});                            // the backward scan, back in sequence order
      if (cfg.if_divide_out()) a = a / 2;
    }
    layers.push_back(a);
  }
  return layers;
}

at::Tensor vim_readout_row(const VimConfig& cfg, const at::Tensor& rollout) {
  const int64_t pos = cfg.cls_position();
  if (pos >= 0) return rollout.select(1, pos);                         // (B, L): the cls token's row
  if (cfg.final_pool_type() == "mean") return rollout.mean(1);         // mean pooling: the mean row
  if (cfg.final_pool_type() == "none") return rollout.select(1, -1);   // the last token
  throw io::InputError("attention rollout needs one pooled token or mean pooling; final_pool_type '" +
                   cfg.final_pool_type() + "' has neither");
}

at::Tensor reduced_hidden_attention(const SsmTrace& tr, ChannelReduce how, const at::Tensor& grad_y,
                                    int64_t max_elements) {
  const int64_t batch = tr.u.size(0), I = tr.u.size(1), L = tr.u.size(2), N = tr.A.size(1);
  const at::Tensor P = tr.delta.cumsum(2).reshape({batch * I, L});                       // (BI, L)
  const at::Tensor delta = tr.delta.reshape({batch * I, L});                             // (BI, L)
  const at::Tensor A = tr.A.unsqueeze(0).expand({batch, I, N}).reshape({batch * I, N});  // (BI, N)
  const at::Tensor row_of = at::arange(batch, at::TensorOptions().dtype(at::kLong).device(tr.u.device()))
                                .repeat_interleave(I);                                   // (BI)
  // B, C: (batch, N, L), or (batch, G, N, L) for Mamba-2's groups (channel d reads group
  // d / (I / G)): flattened to (batch G, N, L) with each pair's index into them.
  const int64_t G = tr.B.dim() == 4 ? tr.B.size(1) : 1;
  const at::Tensor Bflat = tr.B.reshape({batch * G, N, L}), Cflat = tr.C.reshape({batch * G, N, L});
  const at::Tensor channel = at::arange(I, row_of.options()).repeat({batch});            // (BI)
  const at::Tensor bc_of = row_of * G + at::div(channel, I / G, "floor");                // (BI)
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
    const at::Tensor bc = bc_of.narrow(0, p0, np);                                       // (np)
    const at::Tensor Cb = Cflat.index_select(0, bc);                                     // (np, N, L)
    const at::Tensor Bb = Bflat.index_select(0, bc) * delta.narrow(0, p0, np).unsqueeze(1);  // (np, N, s): delta_s B_s
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
