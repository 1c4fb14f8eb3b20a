// The selective scan at a Mamba-130M layer shape (dim 1536, dstate 16) on random inputs:
// forward, the MambaLRP relevance of the scan input u, and the conservation check.
// Run by scripts/setup.sh as the smallest end-to-end job of the library.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "csrc/ops/ops.h"

int main() {
  torch::manual_seed(0);
  const int64_t batch = 1, dim = 1536, dstate = 16, seqlen = 256;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor u = torch::randn({batch, dim, seqlen}, f32).requires_grad_(true);      // (B, D, L)
  torch::Tensor z = torch::randn({batch, dim, seqlen}, f32).requires_grad_(true);      // (B, D, L)
  torch::Tensor delta = torch::randn({batch, dim, seqlen}, f32) * 0.5 - 1.0;          // (B, D, L)
  torch::Tensor A = -torch::arange(1, dstate + 1, f32).repeat({dim, 1});               // (D, N), S4D-real init
  torch::Tensor B = torch::randn({batch, dstate, seqlen}, f32);                       // (B, N, L)
  torch::Tensor C = torch::randn({batch, dstate, seqlen}, f32);                       // (B, N, L)
  torch::Tensor dt_bias = torch::full({dim}, -2.0, f32);                              // (D)

  const auto t0 = std::chrono::steady_clock::now();
  auto [out, last] = mamba_lrp::ops::selective_scan(u, delta, A, B, C, c10::nullopt, z, dt_bias,
                                               /*delta_softplus=*/true, /*return_last_state=*/true, "mambalrp");
  const auto t1 = std::chrono::steady_clock::now();
  out.sum().backward();  // explain the sum of all outputs
  const auto t2 = std::chrono::steady_clock::now();

  torch::NoGradGuard no_grad;
  const double f = out.sum().item<double>();
  const double r_u = (u * u.grad()).sum().item<double>();
  const double r_z = (z * z.grad()).sum().item<double>();
  const double ms_fwd = std::chrono::duration<double, std::milli>(t1 - t0).count();
  const double ms_bwd = std::chrono::duration<double, std::milli>(t2 - t1).count();
  std::printf("selective_scan, Mamba-130M layer shape (batch %ld, dim %ld, dstate %ld, seqlen %ld), CPU %s, %d thread(s)\n",
              (long)batch, (long)dim, (long)dstate, (long)seqlen, mamba_lrp::ops::cpu_scan_isa(), at::get_num_threads());
  std::printf("  forward %.1f ms, MambaLRP backward %.1f ms\n", ms_fwd, ms_bwd);
  std::printf("  output to explain f = sum(out)      = %+.6f\n", f);
  std::printf("  relevance on u (SSM rule, half gate) = %+.6f\n", r_u);
  std::printf("  relevance on z (gate, SiLU identity) = %+.6f\n", r_z);
  const double err = std::abs(r_u + r_z - f) / std::max(1.0, std::abs(f));
  std::printf("  conservation: |R_u + R_z - f| / |f| = %.2e  %s\n", err, err < 1e-4 ? "(conserved)" : "(NOT conserved)");
  const torch::Tensor per_step = u.grad().mul(u).sum(torch::IntArrayRef{0, 1});  // (L): relevance per time step
  const auto [values, indices] = per_step.topk(5);
  std::printf("  most relevant time steps:");
  for (int64_t i = 0; i < 5; ++i)
    std::printf(" t=%ld (%.3f)", (long)indices[i].item().toLong(), values[i].item().toDouble());
  std::printf("\n");
  return err < 1e-4 ? 0 : 1;
}
