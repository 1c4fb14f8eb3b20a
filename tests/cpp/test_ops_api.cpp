// The C++ API (csrc/ops/ops.h) used without Python: selective_scan against the float64
// loop of scan_reference.h, the MambaLRP backward through torch::autograd, rule ops, and
// errors.
#include <torch/torch.h>
// After torch: c10's logging defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "csrc/ops/ops.h"
#include "scan_reference.h"

using scan_test::random_case;
using scan_test::ScanCase;
using scan_test::ScanOptions;

TEST_CASE("selective_scan from C++ equals the float64 reference loop", "[ops]") {
  for (int64_t seqlen : {1, 5, 70}) {
    for (int64_t dstate : {1, 16, 19}) {
      for (int64_t groups : {0, 1, 3}) {  // B, C 3-d, or 4-d with 1 or 3 groups
        INFO("seqlen " << seqlen << " dstate " << dstate << " groups " << groups);
        const ScanCase c = random_case(2, 3, seqlen, dstate, ScanOptions().groups(groups).seed(42 + seqlen + dstate));
        auto [out, last] =
            mamba_lrp::ops::selective_scan(c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, true, "exact");
        REQUIRE(last.has_value());
        CHECK(last->sizes() == torch::IntArrayRef({2, 3, dstate}));
        const auto ref = scan_test::reference_scan(c);
        CHECK(torch::allclose(out, ref.out, 1e-12, 1e-12));
        CHECK(torch::allclose(*last, ref.last_state, 1e-12, 1e-12));
      }
    }
  }
}

TEST_CASE("MambaLRP backward from C++: only u and z get gradient, relevance conserved", "[ops]") {
  ScanCase c = random_case(1, 4, 33, 8, ScanOptions().seed(7));
  torch::Tensor u = c.u.clone().requires_grad_(true), z = c.z.clone().requires_grad_(true);
  torch::Tensor A = c.A.clone().requires_grad_(true), delta = c.delta.clone().requires_grad_(true);
  torch::Tensor B = c.B.clone().requires_grad_(true), C = c.C.clone().requires_grad_(true);
  auto [out, last] = mamba_lrp::ops::selective_scan(u, delta, A, B, C, c10::nullopt, z, c.bias, true, false, "mambalrp");
  CHECK_FALSE(last.has_value());
  out.sum().backward();
  REQUIRE(u.grad().defined());
  REQUIRE(z.grad().defined());
  c.D = torch::Tensor();  // as called: no D
  c.gout = torch::ones_like(c.u);
  const auto ref = scan_test::reference_scan(c);
  CHECK(torch::allclose(u.grad(), ref.du, 1e-12, 1e-12));
  CHECK(torch::allclose(z.grad(), ref.dz, 1e-12, 1e-12));
  CHECK_FALSE(A.grad().defined());
  CHECK_FALSE(delta.grad().defined());
  CHECK_FALSE(B.grad().defined());
  CHECK_FALSE(C.grad().defined());
  // No D, no bias on the path: relevance on u plus on z equals the output's (half each).
  const double r_out = out.sum().item<double>();
  const double r_u = (u * u.grad()).sum().item<double>();
  const double r_z = (z * z.grad()).sum().item<double>();
  CHECK(r_u == Approx(0.5 * r_out).epsilon(1e-12));
  CHECK(r_z == Approx(0.5 * r_out).epsilon(1e-12));
}

TEST_CASE("rule ops from C++: silu identity and gate half", "[ops]") {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({5, 3}, torch::kFloat64).requires_grad_(true);
  torch::Tensor y = mamba_lrp::ops::silu_identity(x);
  CHECK(torch::allclose(y, torch::silu(x.detach()), 0, 0));
  y.backward(torch::ones_like(y));
  CHECK(torch::allclose(x.grad(), torch::sigmoid(x.detach()), 1e-15, 1e-15));

  torch::Tensor a = torch::randn({4}, torch::kFloat64).requires_grad_(true);
  torch::Tensor b = torch::randn({4}, torch::kFloat64).requires_grad_(true);
  mamba_lrp::ops::gate_half(a, b).sum().backward();
  CHECK(torch::allclose(a.grad(), 0.5 * b.detach(), 1e-15, 1e-15));
  CHECK(torch::allclose(b.grad(), 0.5 * a.detach(), 1e-15, 1e-15));
}

TEST_CASE("linear_gamma from C++ conserves relevance with zero bias", "[ops]") {
  torch::manual_seed(3);
  torch::Tensor x = torch::randn({6, 10}, torch::kFloat64).requires_grad_(true);
  torch::Tensor w = torch::randn({7, 10}, torch::kFloat64);
  torch::Tensor out = mamba_lrp::ops::linear_gamma(x, w, torch::zeros({7}, torch::kFloat64), 0.25);
  CHECK(torch::allclose(out, torch::nn::functional::linear(x.detach(), w), 1e-14, 1e-14));
  out.sum().backward();
  CHECK((x.detach() * x.grad()).sum().item<double>() == Approx(out.sum().item<double>()).epsilon(1e-12));
}

TEST_CASE("bad input raises an error naming the argument", "[ops]") {
  const ScanCase c = random_case(2, 3, 4, 2, ScanOptions().seed(1));
  auto message_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const c10::Error& e) {
      return e.what_without_backtrace();
    }
    return "";
  };
  CHECK_THAT(message_of([&] { mamba_lrp::ops::selective_scan(c.u[0], c.delta, c.A, c.B, c.C); }),
             Catch::Contains("u must have shape (batch, dim, seqlen)"));
  CHECK_THAT(message_of([&] { mamba_lrp::ops::selective_scan(c.u, c.delta, c.A, c.B, c.C, {}, {}, {}, false, false, "grad"); }),
             Catch::Contains("rule must be \"exact\" or \"mambalrp\""));
  CHECK_THAT(message_of([&] { mamba_lrp::ops::selective_scan(c.u, c.delta, c.A.to(torch::kFloat32), c.B, c.C); }),
             Catch::Contains("A must have dtype"));
}

TEST_CASE("the CPU scan reports its instruction set", "[ops]") {
  const std::string isa = mamba_lrp::ops::cpu_scan_isa();
  CHECK((isa == "avx512" || isa == "avx2" || isa == "baseline"));
}
