// The C++ API reaches the CUDA selective scan: ops::selective_scan on CUDA tensors goes
// through the dispatcher to the CUDA kernels (forward and MambaLRP backward), and agrees
// with the CPU op. Only that here; the CUDA kernels' numbers (shapes, dtypes, rules,
// gradients, errors) are tested in tests/python/test_cuda_scan.py. Tagged [cuda]: ctest runs
// it as cpp_tests_cuda (label cuda); without a GPU it returns early with a warning. Compiles
// against a CPU-only libtorch too: only torch/torch.h APIs.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include "csrc/ops/ops.h"
#include "scan_reference.h"

TEST_CASE("ops::selective_scan on CUDA tensors runs the CUDA kernels and equals the CPU op", "[cuda]") {
  if (!torch::cuda::is_available()) {
    WARN("no CUDA device: CUDA selective-scan test skipped");
    return;
  }
  using scan_test::opt;
  using scan_test::rel_err;
  // 200 steps cross the kernels' chunks; groups 1 (4-d B and C).
  const scan_test::ScanCase cpu =
      scan_test::random_case(2, 16, 200, 16, scan_test::ScanOptions().dtype(torch::kFloat).groups(1).seed(1));
  const scan_test::ScanCase gpu = cpu.to(torch::kCUDA);

  // Forward and the MambaLRP backward (with the last state: the op's plain CUDA forward and
  // backward kernels) for the output gradient gout.
  auto run = [](const scan_test::ScanCase& c) {
    const torch::Tensor u = c.u.clone().requires_grad_(true), z = c.z.clone().requires_grad_(true);
    auto [out, last] = mamba_lrp::ops::selective_scan(u, c.delta, c.A, c.B, c.C, opt(c.D), z, opt(c.bias),
                                                      /*delta_softplus=*/true, /*return_last_state=*/true, "mambalrp");
    out.backward(c.gout);
    return std::make_tuple(out, *last, u.grad(), z.grad());
  };
  const auto [out_c, last_c, du_c, dz_c] = run(cpu);
  const auto [out_g, last_g, du_g, dz_g] = run(gpu);
  CHECK(out_g.is_cuda());
  CHECK(du_g.is_cuda());
  // float32 against float32: different summation order and exp; 1e-5 of the scale.
  CHECK(rel_err(out_g, out_c) < 1e-5);
  CHECK(rel_err(last_g, last_c) < 1e-5);
  CHECK(rel_err(du_g, du_c) < 1e-5);
  CHECK(rel_err(dz_g, dz_c) < 1e-5);

  // The CUDA kernel's own input check (not a composite's, which would take float64).
  const scan_test::ScanCase f64 = cpu.to(torch::TensorOptions().dtype(torch::kDouble).device(torch::kCUDA));
  CHECK_THROWS_WITH(mamba_lrp::ops::selective_scan(f64.u, f64.delta, f64.A, f64.B, f64.C),
                    Catch::Contains("on CUDA u must be float32, float16 or bfloat16"));
}
