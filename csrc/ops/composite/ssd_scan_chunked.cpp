// The SSD scan in ATen: the chunked form as batched matrix products and a loop over the
// chunks for the state passing. Differentiable in every input, so autograd gives the exact
// rule's backward; also the forward and the MambaLRP transpose for every device without a
// kernel of its own (registered for CompositeExplicitAutograd; CPU has kernels/cpu/ssd_scan).
#include <torch/library.h>

#include <limits>
#include <vector>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"
#include "csrc/ops/ssd_scan_common.h"

namespace mamba_lrp {
namespace ops {
namespace composite {
namespace {

// S_i = exp(ld_i) S_{i-1} + win_i x_i ⊗ Bin_i, y_i = wout_i S_i Cout_i + D x_i, S_{-1} = init
// (zero if undefined), in chunks of Q steps. x4 (b, H, P, L); ld, win, wout (b, H, L), win
// and wout optional (1); Bin, Cout (b, G, N, L). Returns y (b, H, P, L) and the last state (b, H, P, N).
std::tuple<at::Tensor, at::Tensor> chunked_scan(const at::Tensor& x4, const at::Tensor& ld, const at::Tensor& win,
                                                const at::Tensor& wout, const at::Tensor& Bin, const at::Tensor& Cout,
                                                const OptTensor& D, const at::Tensor& init, int64_t Q) {
  const int64_t b = x4.size(0), H = x4.size(1), P = x4.size(2), L = x4.size(3), G = Bin.size(1), N = Bin.size(2);
  const int64_t Hg = H / G, nc = (L + Q - 1) / Q, pad = nc * Q - L;
  // Padded steps: x = 0 and log decay 0, so they leave the state as it is.
  auto padded = [&](const at::Tensor& t) { return pad ? at::constant_pad_nd(t, {0, pad}) : t; };
  auto per_step = [&](const at::Tensor& t) { return padded(t).reshape({b, G, Hg, nc, Q}); };  // (b, G, Hg, nc, Q)
  const at::Tensor xc = padded(x4).reshape({b, G, Hg, P, nc, Q}).permute({0, 1, 2, 4, 5, 3});  // (b, G, Hg, nc, Q, P)
  auto bc_chunks = [&](const at::Tensor& t) {  // (b, G, 1, nc, Q, N)
    return padded(t).reshape({b, G, N, nc, Q}).permute({0, 1, 3, 4, 2}).unsqueeze(2);
  };
  const at::Tensor Bc = bc_chunks(Bin), Cc = bc_chunks(Cout);
  const at::Tensor cum = per_step(ld).cumsum(-1);                                   // (b, G, Hg, nc, Q)
  const at::Tensor winc = win.defined() ? per_step(win) : at::Tensor();
  const at::Tensor woutc = wout.defined() ? per_step(wout) : at::Tensor();

  // Within each chunk: M_ij = wout_i (Cout_i · Bin_j) exp(cum_i - cum_j) win_j for j <= i.
  const at::Tensor causal = at::ones({Q, Q}, x4.options().dtype(at::kBool)).tril();
  const at::Tensor seg = (cum.unsqueeze(-1) - cum.unsqueeze(-2))                  // (..., i, j)
                             .masked_fill(causal.logical_not(), -std::numeric_limits<double>::infinity());
  at::Tensor M = at::matmul(Cc, Bc.transpose(-1, -2)) * at::exp(seg);             // (b, G, Hg, nc, Q, Q)
  if (winc.defined()) M = M * winc.unsqueeze(-2);
  if (woutc.defined()) M = M * woutc.unsqueeze(-1);
  at::Tensor y = at::matmul(M, xc);                                               // (b, G, Hg, nc, Q, P)

  // What each chunk adds to the state: Σ_j exp(cum_last - cum_j) win_j x_j ⊗ Bin_j.
  at::Tensor w = at::exp(cum.narrow(-1, Q - 1, 1) - cum);                         // (b, G, Hg, nc, Q)
  if (winc.defined()) w = w * winc;
  const at::Tensor added = at::matmul((xc * w.unsqueeze(-1)).transpose(-1, -2), Bc);  // (b, G, Hg, nc, P, N)
  const at::Tensor chunk_decay = at::exp(cum.select(-1, Q - 1));                  // (b, G, Hg, nc)
  at::Tensor S = init.defined() ? init.reshape({b, G, Hg, P, N}) : at::zeros({b, G, Hg, P, N}, x4.options());
  std::vector<at::Tensor> entering;
  entering.reserve(nc);
  for (int64_t c = 0; c < nc; ++c) {
    entering.push_back(S);
    S = chunk_decay.select(3, c).unsqueeze(-1).unsqueeze(-1) * S + added.select(3, c);
  }
  // The state entering each chunk, read out: wout_i exp(cum_i) S Cout_i.
  at::Tensor from_state = at::matmul(Cc, at::stack(entering, 3).transpose(-1, -2)) * at::exp(cum).unsqueeze(-1);
  if (woutc.defined()) from_state = from_state * woutc.unsqueeze(-1);
  y = (y + from_state).permute({0, 1, 2, 5, 3, 4}).reshape({b, H, P, nc * Q}).narrow(-1, 0, L);
  if (D) y = y + D->view({1, H, 1, 1}) * x4;
  return {y, S.reshape({b, H, P, N})};
}

int64_t composite_chunk(int64_t chunk_size, int64_t seqlen) {
  const int64_t q = resolve_ssd_chunk_size(chunk_size, seqlen);
  return q >= 2 ? q : kSsdDefaultChunk;  // the per-step form is the kernel's; here always chunks
}

}  // namespace

std::tuple<at::Tensor, OptTensor> ssd_scan(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                                           const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                           bool return_last_state, c10::string_view rule, int64_t chunk_size) {
  ssd_rule_is_mambalrp(rule);
  const SsdScanSizes s = check_ssd_scan_call(x, delta, A, B, C, D, chunk_size);
  auto [y, last] = chunked_scan(s.x4, delta * A.view({1, s.heads, 1}), delta, at::Tensor(), B, C, D, at::Tensor(),
                                composite_chunk(chunk_size, s.seqlen));
  return {y.reshape(x.sizes()), return_last_state ? OptTensor(last) : c10::nullopt};
}

at::Tensor ssd_scan_transpose(const at::Tensor& grad_out, const OptTensor& grad_last_state, const at::Tensor& delta,
                              const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                              int64_t chunk_size) {
  const SsdScanSizes s = check_ssd_transpose_call(grad_out, grad_last_state, delta, A, B, C, D, chunk_size);
  // The forward recurrence in reversed time: R_t = exp(Δ_{t+1} A) R_{t+1} + dy_t ⊗ C_t,
  // dx_t = Δ_t R_t B_t + D dy_t, with R starting from the last state's gradient.
  const int64_t L = s.seqlen;
  const at::Tensor next_decay = at::constant_pad_nd(delta.narrow(2, 1, L - 1) * A.view({1, s.heads, 1}), {0, 1});
  auto [dx, unused] = chunked_scan(s.x4.flip({3}), next_decay.flip({2}), at::Tensor(), delta.flip({2}), C.flip({3}),
                                   B.flip({3}), D, grad_last_state ? *grad_last_state : at::Tensor(),
                                   composite_chunk(chunk_size, L));
  return dx.flip({3}).reshape(grad_out.sizes());
}

TORCH_LIBRARY_IMPL(mamba_lrp, CompositeExplicitAutograd, m) {
  m.impl("ssd_scan", TORCH_FN(ssd_scan));
  m.impl("_ssd_scan_transpose", TORCH_FN(ssd_scan_transpose));
}

}  // namespace composite
}  // namespace ops
}  // namespace mamba_lrp
