#include "csrc/app/generate/batched_lrp.h"

#include <algorithm>
#include <vector>

#include "csrc/ops/ops.h"

namespace mamba_lrp {
namespace {

// What the backward of one layer reads from the forward, channel-major (every tensor with
// batch 1 and time last, so a (1, ., T) factor serves a (G, ., T) cotangent batch, and its
// first Tc steps serve cotangents that are zero after Tc). One record serves both mixers:
// the backward of a layer is out_proj^T, the gate and norm rules (Mamba-2's gated norm
// folded into gy_factor / gz_factor; Mamba-1's gate inside the scan's factors), the scan's
// MambaLRP backward in the scan input u, the SiLU rule, the conv's input gradient, in_proj^T
// (x and z rows), the block norm's rule and the residual.
struct LayerRecord {
  at::Tensor norm_scale;          // (1, 1, T) rsqrt(mean(h^2) + eps) * ... : the block norm, constant
  at::Tensor norm_weight;         // (H, 1)
  at::Tensor silu_scale;          // (1, I, T) sigmoid(c) at the conv output c of x's channels, times the mask
  ops::LrpScanFactors factors;    // (1, I, T) each (Mamba-2: dt only, no gate in the scan)
  at::Tensor A, B, C, D;          // (I, N); (1, N, T) or (1, G, N, T); (I)
  at::Tensor gy_factor, gz_factor;  // Mamba-2: (1, I, T) from the gated norm's output gradient to y and z
  at::Tensor w_out, w_x, w_z;     // (H, I), (I, H), (I, H): out_proj and in_proj's x and z rows
  at::Tensor conv_x;              // (I, 1, K) the conv's weights of x's channels
};

at::Tensor channels(const at::Tensor& t) { return t.transpose(1, 2).contiguous(); }  // (B, L, F) <-> (B, F, L)

// Mamba-1's mixer with the rules' constant factors recorded; returns the mixer output (1, T, H).
at::Tensor record_mamba1(MambaMixerImpl& mixer, const MambaConfig& cfg, const at::Tensor& normed,
                         const at::Tensor& m3, LayerRecord& rec) {
  const int64_t I = cfg.intermediate_size(), N = cfg.state_size(), R = cfg.time_step_rank();
  auto masked = [&](const at::Tensor& t) { return m3.defined() ? t * m3 : t; };
  const at::Tensor xz = channels(at::linear(normed, mixer.in_proj->weight, mixer.in_proj->opt_bias()));  // (1, 2I, T)
  const at::Tensor x = masked(xz.narrow(1, 0, I)).contiguous(), z = xz.narrow(1, I, I).contiguous();  // (1, I, T)
  const ops::ConvSiluParts parts = ops::_causal_conv1d_silu(x, mixer.conv1d->weight, mixer.conv1d->opt_bias(),
                                                            ops::kSilu | ops::kSigmoid);
  const at::Tensor u = masked(parts.silu);                                         // (1, I, T)
  rec.silu_scale = masked(parts.sigmoid);
  const at::Tensor params = at::linear(u.transpose(1, 2), mixer.x_proj->weight);   // (1, T, R + 2N)
  rec.B = channels(params.narrow(2, R, N));                                        // (1, N, T)
  rec.C = channels(params.narrow(2, R + N, N));                                    // (1, N, T)
  const at::Tensor delta = channels(at::linear(params.narrow(2, 0, R), mixer.dt_proj->weight));  // (1, I, T)
  rec.A = -at::exp(mixer.A_log);                                                   // (I, N)
  rec.D = mixer.D;
  auto [y, factors] = ops::_selective_scan_lrp_fwd(u, delta, rec.A, rec.B, rec.C, mixer.D, z,
                                                   mixer.dt_proj->opt_bias(), true);  // y (1, I, T) gated
  rec.factors = factors;
  const at::Tensor w_in = mixer.in_proj->weight;                                   // (2I, H)
  rec.w_x = w_in.narrow(0, 0, I);
  rec.w_z = w_in.narrow(0, I, I);
  rec.w_out = mixer.out_proj->weight;
  rec.conv_x = mixer.conv1d->weight;
  return at::linear(y.transpose(1, 2), mixer.out_proj->weight, mixer.out_proj->opt_bias());  // (1, T, H)
}

// Mamba-2's mixer (models/mamba2.cpp) with the rules' constant factors recorded.
at::Tensor record_mamba2(Mamba2MixerImpl& mixer, const MambaConfig& c, const at::Tensor& normed,
                         const at::Tensor& m3, LayerRecord& rec) {
  const int64_t T = normed.size(1);
  const int64_t I = c.intermediate_size(), heads = c.num_heads(), P = c.head_dim(), G = c.n_groups(),
                N = c.state_size(), conv_dim = c.conv_dim();
  auto masked = [&](const at::Tensor& t) { return m3.defined() ? t * m3 : t; };
  const at::Tensor w_in = mixer.in_proj->weight;                                   // (I + conv_dim + heads, H)
  const at::Tensor proj = channels(at::linear(normed, w_in, mixer.in_proj->opt_bias()));  // (1, rows, T)
  const at::Tensor z = proj.narrow(1, 0, I);                                       // (1, I, T)
  const at::Tensor xbc_in = masked(proj.narrow(1, I, conv_dim)).contiguous();      // (1, conv_dim, T)
  const ops::ConvSiluParts parts = ops::_causal_conv1d_silu(xbc_in, mixer.conv1d->weight, mixer.conv1d->opt_bias(),
                                                            ops::kSilu | ops::kSigmoid);
  const at::Tensor xbc = masked(parts.silu);                                       // (1, conv_dim, T)
  rec.silu_scale = masked(parts.sigmoid.narrow(1, 0, I)).contiguous();             // (1, I, T)
  const at::Tensor x = xbc.narrow(1, 0, I).contiguous();                           // (1, I, T)
  rec.B = xbc.narrow(1, I, G * N).reshape({1, G, N, T});                           // (1, G, N, T)
  rec.C = xbc.narrow(1, I + G * N, G * N).reshape({1, G, N, T});
  const at::Tensor delta = mixer.delta_of(proj.narrow(1, I + conv_dim, heads));    // (1, heads, T)
  // The per-channel scan of forward(): A, Delta, D of head h over its P channels.
  const at::Tensor delta_ch = delta.unsqueeze(2).expand({1, heads, P, T}).reshape({1, I, T});
  rec.A = (-at::exp(mixer.A_log)).unsqueeze(1).expand({heads, P}).reshape({I, 1}).expand({I, N}).contiguous();
  rec.D = mixer.D.unsqueeze(1).expand({heads, P}).reshape({I});
  auto [y, factors] = ops::_selective_scan_lrp_fwd(x, delta_ch, rec.A, rec.B, rec.C, rec.D, c10::nullopt,
                                                   c10::nullopt, false);           // y (1, I, T)
  rec.factors = factors;
  // The gated norm: v = y silu(z), per group of I/G channels v rsqrt(mean(v^2) + eps) * weight.
  // Its rules (rsqrt constant, half rule, SiLU identity on z) make the output gradient g
  // into g_y = g s w silu(z) / 2 and g_z = g s w y sigmoid(z) / 2.
  const at::Tensor gate = at::silu(z);
  const at::Tensor v = y * gate;                                                   // (1, I, T)
  const at::Tensor vg = v.reshape({1, G, I / G, T});
  const at::Tensor s = at::rsqrt(vg.square().mean(2, true) + mixer.norm->eps).expand({1, G, I / G, T}).reshape({1, I, T});
  const at::Tensor sw = s * mixer.norm->weight.unsqueeze(-1);                      // (1, I, T)
  rec.gy_factor = sw * gate * 0.5;
  rec.gz_factor = sw * y * at::sigmoid(z) * 0.5;
  rec.w_z = w_in.narrow(0, 0, I);
  rec.w_x = w_in.narrow(0, I, I);  // x: the first I rows of xBC
  rec.w_out = mixer.out_proj->weight;
  rec.conv_x = mixer.conv1d->weight.narrow(0, 0, I);
  return at::linear((v * sw).transpose(1, 2), mixer.out_proj->weight, mixer.out_proj->opt_bias());  // (1, T, H)
}

// out[k] = w @ x[k] for each k: w (F_out, F_in), x (G, F_in, T) -> (G, F_out, T). One
// (F_out x F_in) x (F_in x T) product per cotangent, read in the layout the scan uses.
at::Tensor per_cotangent_mm(const at::Tensor& w, const at::Tensor& x) {
  at::Tensor out = at::empty({x.size(0), w.size(0), x.size(2)}, x.options());
  for (int64_t k = 0; k < x.size(0); ++k) {
    at::Tensor o = out.select(0, k);
    at::mm_out(o, w, x.select(0, k));
  }
  return out;
}

// One layer's MambaLRP backward for a chunk of cotangents g (Gc, H, Tc), zero after Tc:
// g <- g + the layer's contribution (the residual carries g itself).
void layer_backward(const LayerRecord& rec, const at::Tensor& mask3, at::Tensor& g) {
  const int64_t Gc = g.size(0), Tc = g.size(2);
  auto first = [&](const at::Tensor& t) { return t.narrow(-1, 0, Tc); };          // steps 0..Tc-1
  auto batch = [&](const at::Tensor& t) {                                           // (1, ...) -> (Gc, ...) view
    std::vector<int64_t> size = first(t).sizes().vec();
    size[0] = Gc;
    return first(t).expand(size);
  };
  const at::Tensor g_n = per_cotangent_mm(rec.w_out.t(), g);                       // (Gc, I, Tc) LRP-0 on out_proj
  at::Tensor du, g_z;
  if (rec.gy_factor.defined()) {  // Mamba-2: the gated norm, then the scan without a gate
    g_z = g_n * first(rec.gz_factor);
    du = std::get<0>(ops::_selective_scan_lrp_bwd(g_n * first(rec.gy_factor), {batch(rec.factors.dt)}, rec.A,
                                                  batch(rec.B), batch(rec.C), rec.D, false));
  } else {  // Mamba-1: the gate's half rule and the SiLU rule on z inside the scan's factors
    const ops::LrpScanFactors f{batch(rec.factors.dt), batch(rec.factors.gy_scale), batch(rec.factors.dz_scale)};
    auto [du1, dz] = ops::_selective_scan_lrp_bwd(g_n, f, rec.A, batch(rec.B), batch(rec.C), rec.D, true);
    du = du1;
    g_z = *dz;
  }
  du.mul_(first(rec.silu_scale));                                                  // SiLU rule (and the mask)
  at::Tensor dx = ops::_causal_conv1d_input_grad(du, c10::nullopt, rec.conv_x, /*overwrite_grad_out=*/true);
  if (mask3.defined()) dx.mul_(first(mask3));
  at::Tensor g_h = per_cotangent_mm(rec.w_x.t(), dx);                              // (Gc, H, Tc) LRP-0 on in_proj
  for (int64_t k = 0; k < Gc; ++k) g_h.select(0, k).addmm_(rec.w_z.t(), g_z.select(0, k));
  g.addcmul_(g_h, first(rec.norm_scale) * rec.norm_weight);                        // norm rule, residual
}

// Cotangents per chunk: each chunk goes through every layer before the next starts, so its
// (Gc, I, Tc) temporaries stay small, and it stops at its last token's position.
constexpr int64_t kCotangentsPerChunk = 8;

}  // namespace

BatchedRelevance mambalrp_batched(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask,
                                  const at::Tensor& positions, const at::Tensor& targets) {
  at::NoGradGuard no_graph;  // the backward below is explicit
  const MambaConfig& cfg = model->config();
  const int64_t T = ids.size(1), G = positions.size(0);
  const double eps = cfg.layer_norm_epsilon();
  const at::Tensor embeds = model->embed(ids);                                     // (1, T, H)
  const at::Tensor m3 = mask.defined() ? mask.unsqueeze(1).to(embeds.scalar_type()) : at::Tensor();  // (1, 1, T)

  // ---- The forward, recording each layer's constant factors.
  std::vector<LayerRecord> records;
  at::Tensor h = embeds;                                                           // (1, T, H)
  for (const auto& module : *model->backbone->layers) {
    auto block = module->as<MambaBlock>();
    LayerRecord rec;
    const at::Tensor scale = at::rsqrt(h.square().mean(-1, true) + eps);           // (1, T, 1)
    const at::Tensor normed = h * scale * block->norm->weight;                     // (1, T, H)
    rec.norm_scale = scale.transpose(1, 2);                                        // (1, 1, T)
    rec.norm_weight = block->norm->weight.unsqueeze(-1);                           // (H, 1)
    h = h + (block->mixer2 ? record_mamba2(*block->mixer2, cfg, normed, m3, rec)
                           : record_mamba1(*block->mixer, cfg, normed, m3, rec));
    records.push_back(std::move(rec));
  }
  const at::Tensor final_scale = at::rsqrt(h.square().mean(-1, true) + eps)[0];    // (T, 1)
  const at::Tensor final_weight = model->backbone->norm_f->weight;                 // (H)
  const at::Tensor hidden = h[0] * final_scale * final_weight;                     // (T, H)
  const at::Tensor head_rows = model->head_weight().index_select(0, targets);      // (G, H)
  BatchedRelevance out;
  out.logits = (hidden.index_select(0, positions) * head_rows).sum(-1);            // (G)

  // ---- The backward, one chunk of cotangents at a time: output k starts as the head row of
  // its target at its position (final norm rule), and is zero after that position throughout.
  const at::Tensor pos = positions.to(at::kCPU, at::kLong).contiguous();
  const int64_t* p = pos.data_ptr<int64_t>();
  const at::Tensor e = channels(embeds);                                           // (1, H, T)
  out.relevance = at::zeros({G, T}, embeds.options());
  for (int64_t k0 = 0; k0 < G; k0 += kCotangentsPerChunk) {
    const int64_t Gc = std::min(kCotangentsPerChunk, G - k0);
    const int64_t Tc = *std::max_element(p + k0, p + k0 + Gc) + 1;
    at::Tensor g = at::zeros({Gc, embeds.size(2), Tc}, embeds.options());          // (Gc, H, Tc)
    for (int64_t k = 0; k < Gc; ++k)
      g.select(0, k).select(1, p[k0 + k]).copy_(head_rows[k0 + k] * final_scale[p[k0 + k]] * final_weight);
    for (auto rec = records.rbegin(); rec != records.rend(); ++rec) layer_backward(*rec, m3, g);
    out.relevance.narrow(0, k0, Gc).narrow(1, 0, Tc).copy_((g * e.narrow(2, 0, Tc)).sum(1));  // (Gc, Tc)
  }
  if (mask.defined()) out.relevance = out.relevance * mask.to(out.relevance.scalar_type());
  return out;
}

}  // namespace mamba_lrp
