// The CPU selective scan at real model shapes (as ggml's test-backend-ops names its cases),
// float32 against the float64 loop of scan_reference.h, on inputs initialised as a Mamba
// layer is (A = -(1..16), dt_bias for dt log-uniform in [1e-3, 1e-1]): the forward (out,
// the pre-gate y, the last state) and the MambaLRP gradients du, dz through the public op
// and through the recompute op the models' backward runs. Tagged [scan_recompute] too, so that ctest runs
// it under the AVX2 and baseline loops as well. Python has the same cases in
// tests/python/test_selective_scan.py.
#include <ATen/ATen.h>

#include <torch/torch.h>

#include "csrc/ops/ops.h"
#include "scan_reference.h"
// After ATen: Catch's CHECK, not c10's logging CHECK.
#include <catch2/catch.hpp>

namespace {

struct ModelShape {
  const char* name;
  int64_t batch, dim, seqlen, dstate;
};

// Mamba-130M: d_inner = 2 x 768, d_state 16; 128 tokens. Vim-S: d_inner = 2 x 384, d_state
// 16; 196 patches and the class token, batch 2.
const ModelShape kModelShapes[] = {
    {"Mamba-130M layer", 1, 1536, 128, 16},
    {"Vim-S", 2, 768, 197, 16},
};

// float32 against float64, as max |ours - ref| / max |ref|. Each step adds a few float32
// roundings (2^-24 = 6e-8 relative each; the CPU's exp within 2 ulp), and an error made at a
// step is carried on times exp(dt A) < 1, as the state is: errors add up over the steps a
// state remembers (all 197 where the decay is 0.9998) but are never amplified, and being of
// random sign they mostly cancel. Measured here: at most 1.9e-7 (out, y, last state, du,
// dz; on each of the AVX-512, AVX2 and baseline loops, whose summation orders differ).
// 1e-6, about 16 roundings, leaves 5x.
constexpr double kFloat32Tol = 1e-6;

}  // namespace

TEST_CASE("selective_scan at real model shapes: float32 against the float64 reference",
          "[ops][model_shapes][scan_recompute]") {
  for (const ModelShape& s : kModelShapes) {
    DYNAMIC_SECTION(s.name) {
      const scan_test::ScanCase c = scan_test::random_case(
          s.batch, s.dim, s.seqlen, s.dstate, scan_test::ScanOptions().dtype(at::kFloat).mamba_init(true).seed(3));
      const scan_test::ScanReference ref = scan_test::reference_scan(c);
      using scan_test::rel_err;

      auto [out, y, last] = mamba_lrp::ops::_selective_scan_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias,
                                                                /*delta_softplus=*/true, /*return_last_state=*/true);
      REQUIRE(y.has_value());
      REQUIRE(last.has_value());
      INFO("forward errors: out " << rel_err(out, ref.out) << ", y " << rel_err(*y, ref.y) << ", last state "
                                  << rel_err(*last, ref.last_state));
      CHECK(rel_err(out, ref.out) < kFloat32Tol);
      CHECK(rel_err(*y, ref.y) < kFloat32Tol);
      CHECK(rel_err(*last, ref.last_state) < kFloat32Tol);

      // The public op's MambaLRP backward (from the factors its forward keeps).
      const at::Tensor u = c.u.clone().requires_grad_(true), z = c.z.clone().requires_grad_(true);
      auto [out2, none] = mamba_lrp::ops::selective_scan(u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true, false,
                                                         "mambalrp");
      CHECK(at::equal(out2, out));
      out2.backward(c.gout);
      INFO("MambaLRP errors: du " << rel_err(u.grad(), ref.du) << ", dz " << rel_err(z.grad(), ref.dz));
      CHECK(rel_err(u.grad(), ref.du) < kFloat32Tol);
      CHECK(rel_err(z.grad(), ref.dz) < kFloat32Tol);

      // The recompute backward the models run.
      auto [du, dz] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
          c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, /*overwrite_inputs=*/false,
          /*u_through_silu=*/false);
      CHECK(rel_err(du, ref.du) < kFloat32Tol);
      CHECK(rel_err(*dz, ref.dz) < kFloat32Tol);
    }
  }
}
