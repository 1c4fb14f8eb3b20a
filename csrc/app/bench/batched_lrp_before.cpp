// The batched MambaLRP of csrc/app/generate/batched_lrp.cpp as it was before the chunked,
// channel-major backward (commit 9b4466f), Mamba-1 only: kept for bench_generate_cpp's
// before/after comparison in one process. Not used by mamba-lrp.
#include "csrc/app/bench/batched_lrp_before.h"

#include <vector>

#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace {

// What the backward of one layer reads from the forward (every tensor has batch 1).
struct LayerRecord {
  at::Tensor norm_scale;    // (1, T, 1) rsqrt(mean(h^2) + eps): constant under the norm rule
  at::Tensor conv_sigmoid;  // (1, I, T) sigmoid(c) at the conv output c: the SiLU rule's factor
  ops::LrpScanFactors factors;  // (1, I, T) each: the scan's SSM rule and gate half rule
  at::Tensor A, B, C;       // (I, N), (1, N, T), (1, N, T)
};

at::Tensor channels(const at::Tensor& t) { return t.transpose(1, 2).contiguous(); }  // (B, L, F) <-> (B, F, L)

}  // namespace

BatchedRelevance mambalrp_batched_before(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask,
                                  const at::Tensor& positions, const at::Tensor& targets) {
  at::NoGradGuard no_graph;  // the backward below is explicit
  const MambaConfig& cfg = model->config();
  const int64_t I = cfg.intermediate_size(), N = cfg.state_size(), R = cfg.time_step_rank();
  const int64_t T = ids.size(1), G = positions.size(0);
  const double eps = cfg.layer_norm_epsilon();
  const at::Tensor embeds = model->embed(ids);                                     // (1, T, H)
  const at::Tensor m3 = mask.defined() ? mask.unsqueeze(1).to(embeds.scalar_type()) : at::Tensor();  // (1, 1, T)
  auto masked = [&](const at::Tensor& t) { return m3.defined() ? t * m3 : t; };

  // ---- The forward, recording each layer's constant factors.
  std::vector<LayerRecord> records;
  at::Tensor h = embeds;                                                           // (1, T, H)
  for (const auto& module : *model->backbone->layers) {
    auto block = module->as<MambaBlock>();
    auto mixer = block->mixer;
    LayerRecord rec;
    rec.norm_scale = at::rsqrt(h.square().mean(-1, true) + eps);                   // (1, T, 1)
    const at::Tensor normed = h * rec.norm_scale * block->norm->weight;            // (1, T, H)
    const at::Tensor xz = channels(at::linear(normed, mixer->in_proj->weight, mixer->in_proj->opt_bias()));  // (1, 2I, T)
    const at::Tensor x = masked(xz.narrow(1, 0, I)).contiguous(), z = xz.narrow(1, I, I).contiguous();  // (1, I, T)
    const ops::ConvSiluParts parts = ops::_causal_conv1d_silu(x, mixer->conv1d->weight, mixer->conv1d->opt_bias(),
                                                              ops::kSilu | ops::kSigmoid);
    const at::Tensor u = masked(parts.silu);                                       // (1, I, T)
    rec.conv_sigmoid = parts.sigmoid;
    const at::Tensor params = at::linear(u.transpose(1, 2), mixer->x_proj->weight);  // (1, T, R + 2N)
    rec.B = channels(params.narrow(2, R, N));                                      // (1, N, T)
    rec.C = channels(params.narrow(2, R + N, N));                                  // (1, N, T)
    const at::Tensor delta = channels(at::linear(params.narrow(2, 0, R), mixer->dt_proj->weight));  // (1, I, T)
    rec.A = -at::exp(mixer->A_log);                                                // (I, N)
    auto [y, factors] = ops::_selective_scan_lrp_fwd(u, delta, rec.A, rec.B, rec.C, mixer->D, z,
                                                     mixer->dt_proj->opt_bias(), true);  // y (1, I, T) gated
    rec.factors = factors;
    h = h + at::linear(y.transpose(1, 2), mixer->out_proj->weight, mixer->out_proj->opt_bias());  // (1, T, H)
    records.push_back(std::move(rec));
  }
  const at::Tensor final_scale = at::rsqrt(h.square().mean(-1, true) + eps);       // (1, T, 1)
  const at::Tensor hidden = h * final_scale * model->backbone->norm_f->weight;     // (1, T, H)
  const at::Tensor head_rows = model->head_weight().index_select(0, targets);      // (G, H)
  BatchedRelevance out;
  out.logits = (hidden[0].index_select(0, positions) * head_rows).sum(-1);         // (G)

  // ---- The backward with G cotangents: output k starts as the head row of its target at its position.
  at::Tensor g = at::zeros({G, T, hidden.size(2)}, hidden.options());              // (G, T, H)
  g.index_put_({at::arange(G, positions.options()), positions}, head_rows);
  g = g * final_scale * model->backbone->norm_f->weight;                           // norm rule
  for (int64_t l = static_cast<int64_t>(records.size()) - 1; l >= 0; --l) {
    const LayerRecord& rec = records[l];
    auto block = model->backbone->layers[l]->as<MambaBlock>();
    auto mixer = block->mixer;
    const at::Tensor g_y = channels(at::matmul(g, mixer->out_proj->weight));       // (G, I, T) LRP-0
    auto batched = [&](const at::Tensor& t) { return t.expand({G, t.size(1), t.size(2)}); };
    const ops::LrpScanFactors f{batched(rec.factors.dt), batched(rec.factors.gy_scale), batched(rec.factors.dz_scale)};
    // SSM rule (u -> y linear) and the gate's half rule with the SiLU rule on z.
    auto [du, dz] = ops::_selective_scan_lrp_bwd(g_y, f, rec.A, batched(rec.B), batched(rec.C), mixer->D, true);
    const at::Tensor dc = masked(du) * rec.conv_sigmoid;                           // SiLU rule (G, I, T)
    const at::Tensor dx = masked(ops::_causal_conv1d_input_grad(dc, c10::nullopt, mixer->conv1d->weight));  // (G, I, T)
    const at::Tensor w_in = mixer->in_proj->weight;                                // (2I, H)
    const at::Tensor g_normed = at::matmul(dx.transpose(1, 2), w_in.narrow(0, 0, I)) +
                                at::matmul(dz->transpose(1, 2), w_in.narrow(0, I, I));  // (G, T, H)
    g = g + g_normed * rec.norm_scale * block->norm->weight;                       // residual + norm rule
  }
  out.relevance = (embeds * g).sum(-1);                                            // (G, T)
  if (mask.defined()) out.relevance = out.relevance * mask.to(out.relevance.scalar_type());
  return out;
}

}  // namespace mamba_lrp
