// The recompute MambaLRP scan backward (the internal op _selective_scan_lrp_bwd_recompute)
// against a scalar float64 loop written here, and against the forward-with-factors /
// backward pair it replaces in the recompute branch (bitwise on the CPU: same arithmetic in
// the same order). The ATen composites that serve every other device are held to the same
// loop. ctest also runs this file under the AVX2 and baseline loops (MAMBA_LRP_CPU_ISA).
#include <ATen/ATen.h>

#include <cmath>
#include <tuple>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"
// After ATen: Catch's CHECK, not c10's logging CHECK.
#include <catch2/catch.hpp>

namespace {

struct ScanCase {
  at::Tensor u, delta, A, B, C, D, z, bias, gout;  // (Bt, I, L); A (I, N); B, C (Bt, N, L); D, bias (I)
};

ScanCase random_case(int64_t batch, int64_t dim, int64_t len, int64_t dstate, at::ScalarType dtype, bool decay_only,
                     uint64_t seed) {
  at::manual_seed(seed);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  ScanCase c;
  c.u = at::randn({batch, dim, len}, o);
  c.delta = at::randn({batch, dim, len}, o) * 0.5;
  // Either every exponent dt A <= 0 (every Mamba model), or small ones of both signs.
  c.A = decay_only ? -at::exp(at::randn({dim, dstate}, o) * 0.5) : at::randn({dim, dstate}, o) * 0.02;
  c.B = at::randn({batch, dstate, len}, o);
  c.C = at::randn({batch, dstate, len}, o);
  c.D = at::randn({dim}, o);
  c.z = at::randn({batch, dim, len}, o);
  c.bias = at::randn({dim}, o) * 0.1;
  c.gout = at::randn({batch, dim, len}, o);
  for (at::Tensor* t : {&c.u, &c.delta, &c.A, &c.B, &c.C, &c.D, &c.z, &c.bias, &c.gout}) *t = t->to(dtype);
  return c;
}

// MambaLRP gradients, one state at a time, in float64:
//   dt = softplus(delta + bias);  h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t;  y_t = C_t . h_t + D u_t
//   gy_t = g_t silu(z_t) / 2;  dz_t = g_t y_t sigmoid(z_t) / 2 (with z; else gy_t = g_t)
//   lambda_t = exp(dt_{t+1} A) lambda_{t+1} + gy_t C_t;  du_t = dt_t B_t . lambda_t + D gy_t
std::pair<at::Tensor, at::Tensor> naive_mambalrp_grads(const ScanCase& c64, bool with_z) {
  const int64_t batch = c64.u.size(0), dim = c64.u.size(1), len = c64.u.size(2), N = c64.A.size(1);
  at::Tensor du = at::zeros_like(c64.u), dz = at::zeros_like(c64.u);
  auto u = c64.u.accessor<double, 3>(), delta = c64.delta.accessor<double, 3>(), z = c64.z.accessor<double, 3>();
  auto g = c64.gout.accessor<double, 3>(), Bm = c64.B.accessor<double, 3>(), Cm = c64.C.accessor<double, 3>();
  auto A = c64.A.accessor<double, 2>();
  auto D = c64.D.accessor<double, 1>(), bias = c64.bias.accessor<double, 1>();
  auto du_a = du.accessor<double, 3>(), dz_a = dz.accessor<double, 3>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < dim; ++d) {
      std::vector<double> dt(len), y(len, 0.0), gy(len);
      for (int64_t t = 0; t < len; ++t) dt[t] = std::log1p(std::exp(delta[b][d][t] + bias[d]));
      for (int64_t n = 0; n < N; ++n) {
        double h = 0;
        for (int64_t t = 0; t < len; ++t) {
          h = std::exp(dt[t] * A[d][n]) * h + dt[t] * u[b][d][t] * Bm[b][n][t];
          y[t] += Cm[b][n][t] * h;
        }
      }
      for (int64_t t = 0; t < len; ++t) {
        y[t] += D[d] * u[b][d][t];
        const double sig = 1.0 / (1.0 + std::exp(-z[b][d][t]));
        gy[t] = with_z ? g[b][d][t] * z[b][d][t] * sig / 2 : g[b][d][t];
        if (with_z) dz_a[b][d][t] = g[b][d][t] * y[t] * sig / 2;
        du_a[b][d][t] = D[d] * gy[t];
      }
      for (int64_t n = 0; n < N; ++n) {
        double lambda = 0;
        for (int64_t t = len - 1; t >= 0; --t) {
          lambda = (t + 1 < len ? std::exp(dt[t + 1] * A[d][n]) * lambda : 0.0) + gy[t] * Cm[b][n][t];
          du_a[b][d][t] += dt[t] * Bm[b][n][t] * lambda;
        }
      }
    }
  return {du, dz};
}

void check_close(const at::Tensor& ours, const at::Tensor& ref, double rtol) {
  const double scale = ref.abs().max().item<double>();
  const double err = (ours.to(at::kDouble) - ref).abs().max().item<double>();
  INFO("max abs error " << err << ", max |ref| " << scale);
  CHECK(err <= rtol * scale);
}

}  // namespace

TEST_CASE("recompute MambaLRP scan backward equals a float64 loop and the factor pair", "[scan_recompute]") {
  // seqlen 150: two full chunks of 64 and a partial one not a whole vector long; dstate 5:
  // padded lanes; positive A entries: the general exp.
  for (auto dtype : {at::kDouble, at::kFloat})
    for (bool with_z : {true, false})
      for (bool decay_only : {true, false})
        for (int64_t dstate : {16, 5}) {
          DYNAMIC_SECTION("dtype " << dtype << " z " << with_z << " decay only " << decay_only << " dstate " << dstate) {
            const ScanCase c = random_case(2, 5, 150, dstate, dtype, decay_only, 7 + dstate);
            const ScanCase c64 = random_case(2, 5, 150, dstate, at::kDouble, decay_only, 7 + dstate);
            const c10::optional<at::Tensor> z = with_z ? c10::optional<at::Tensor>(c.z) : c10::nullopt;
            const auto ref = naive_mambalrp_grads(c64, with_z);
            const double rtol = dtype == at::kDouble ? 1e-10 : 2e-5;

            auto [du, dz] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
                c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true, /*overwrite_inputs=*/false,
                /*u_through_silu=*/false);
            check_close(du, ref.first, rtol);
            REQUIRE(dz.has_value() == with_z);
            if (with_z) check_close(*dz, ref.second, rtol);

            // The pair it replaces: the same numbers, bit for bit.
            const auto fwd = mamba_lrp::ops::_selective_scan_lrp_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true);
            const auto pair = mamba_lrp::ops::_selective_scan_lrp_bwd(c.gout, std::get<1>(fwd), c.A, c.B, c.C, c.D, true);
            CHECK(at::equal(du, std::get<0>(pair)));
            if (with_z) CHECK(at::equal(*dz, *std::get<1>(pair)));

            // The ATen composites (every device without a kernel of its own): the same loop.
            namespace composite = mamba_lrp::ops::composite;
            auto [cdu, cdz] = composite::selective_scan_lrp_bwd_recompute(c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, z,
                                                                          c.bias, true, false, false);
            check_close(cdu, ref.first, rtol);
            if (with_z) check_close(*cdz, ref.second, rtol);
            auto [cout, cdt, cgy, cdzs] = composite::selective_scan_lrp_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true);
            check_close(cout, std::get<0>(fwd), rtol);
            auto [pdu, pdz] = composite::selective_scan_lrp_bwd(c.gout, cdt, cgy, cdzs, c.A, c.B, c.C, c.D, true);
            check_close(pdu, ref.first, rtol);
            if (with_z) check_close(*pdz, ref.second, rtol);

            // Overwriting: du over u, dz over delta, same values.
            at::Tensor u2 = c.u.clone(), delta2 = c.delta.clone();
            auto [du2, dz2] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
                c.gout, u2, delta2, c.A, c.B, c.C, c.D, z, c.bias, true, /*overwrite_inputs=*/true,
                /*u_through_silu=*/false);
            CHECK(du2.data_ptr() == u2.data_ptr());
            CHECK(at::equal(du2, du));
            if (with_z) {
              CHECK(dz2->data_ptr() == delta2.data_ptr());
              CHECK(at::equal(*dz2, *dz));
            }
          }
        }
}

TEST_CASE("recompute MambaLRP scan backward from the conv output (u = silu(c))", "[scan_recompute]") {
  for (auto dtype : {at::kDouble, at::kFloat}) {
    DYNAMIC_SECTION("dtype " << dtype) {
      const ScanCase c = random_case(2, 5, 150, 16, dtype, true, 11);
      ScanCase c64 = random_case(2, 5, 150, 16, at::kDouble, true, 11);
      const at::Tensor conv_out = c64.u;  // the random u plays c
      const at::Tensor sig = at::sigmoid(conv_out);
      c64.u = conv_out * sig;
      const auto ref = naive_mambalrp_grads(c64, true);
      auto [dc, dz] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
          c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, /*overwrite_inputs=*/false,
          /*u_through_silu=*/true);
      const double rtol = dtype == at::kDouble ? 1e-10 : 2e-5;
      check_close(dc, ref.first * sig, rtol);  // the SiLU identity rule: du sigmoid(c)
      check_close(*dz, ref.second, rtol);
      auto [cdc, cdz] = mamba_lrp::ops::composite::selective_scan_lrp_bwd_recompute(
          c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, false, /*u_through_silu=*/true);
      check_close(cdc, ref.first * sig, rtol);
      check_close(*cdz, ref.second, rtol);
    }
  }
}

TEST_CASE("the scan's output over u equals the scan's own forward", "[scan_recompute]") {
  const ScanCase c = random_case(2, 5, 150, 16, at::kFloat, true, 3);
  const auto fwd = mamba_lrp::ops::_selective_scan_lrp_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true);
  at::Tensor u2 = c.u.clone();
  const at::Tensor out = mamba_lrp::ops::_selective_scan_fwd_over_u(u2, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true);
  CHECK(out.data_ptr() == u2.data_ptr());
  CHECK(at::equal(out, std::get<0>(fwd)));
  // A strided u is left alone and the output is a fresh tensor.
  const at::Tensor strided = c.u.transpose(0, 1).contiguous().transpose(0, 1);
  const at::Tensor before = strided.clone();
  const at::Tensor out2 =
      mamba_lrp::ops::_selective_scan_fwd_over_u(strided, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true);
  CHECK(at::equal(strided, before));
  CHECK(at::equal(out2, std::get<0>(fwd)));
}
