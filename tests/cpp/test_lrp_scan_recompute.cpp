// The recompute MambaLRP scan backward (the internal op _selective_scan_lrp_bwd_recompute)
// against the scalar float64 loop of scan_reference.h, and against the forward-with-factors /
// backward pair it replaces in the recompute branch (bitwise on the CPU: same arithmetic in
// the same order). The ATen composites that serve every other device are held to the same
// loop. ctest also runs this file under the AVX2 and baseline loops (MAMBA_LRP_CPU_ISA).
#include <ATen/ATen.h>

#include <cmath>
#include <tuple>

#include "csrc/ops/composite/composite.h"
#include "csrc/ops/ops.h"
#include "scan_reference.h"
// After ATen: Catch's CHECK, not c10's logging CHECK.
#include <catch2/catch.hpp>

namespace {

using scan_test::random_case;
using scan_test::ScanCase;
using scan_test::ScanOptions;

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
            const ScanCase c = random_case(
                2, 5, 150, dstate, ScanOptions().dtype(dtype).with_z(with_z).decay_only(decay_only).seed(7 + dstate));
            const c10::optional<at::Tensor> z = scan_test::opt(c.z);
            const auto ref = scan_test::reference_scan(c);
            const double rtol = dtype == at::kDouble ? 1e-10 : 2e-5;

            auto [du, dz] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
                c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true, /*overwrite_inputs=*/false,
                /*u_through_silu=*/false);
            check_close(du, ref.du, rtol);
            REQUIRE(dz.has_value() == with_z);
            if (with_z) check_close(*dz, ref.dz, rtol);

            // The pair it replaces: the same numbers, bit for bit.
            const auto fwd = mamba_lrp::ops::_selective_scan_lrp_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true);
            const auto pair = mamba_lrp::ops::_selective_scan_lrp_bwd(c.gout, std::get<1>(fwd), c.A, c.B, c.C, c.D, true);
            CHECK(at::equal(du, std::get<0>(pair)));
            if (with_z) CHECK(at::equal(*dz, *std::get<1>(pair)));

            // The ATen composites (every device without a kernel of its own): the same loop.
            namespace composite = mamba_lrp::ops::composite;
            auto [cdu, cdz] = composite::selective_scan_lrp_bwd_recompute(c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, z,
                                                                          c.bias, true, false, false);
            check_close(cdu, ref.du, rtol);
            if (with_z) check_close(*cdz, ref.dz, rtol);
            auto [cout, cdt, cgy, cdzs] = composite::selective_scan_lrp_fwd(c.u, c.delta, c.A, c.B, c.C, c.D, z, c.bias, true);
            check_close(cout, std::get<0>(fwd), rtol);
            auto [pdu, pdz] = composite::selective_scan_lrp_bwd(c.gout, cdt, cgy, cdzs, c.A, c.B, c.C, c.D, true);
            check_close(pdu, ref.du, rtol);
            if (with_z) check_close(*pdz, ref.dz, rtol);

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
      const ScanCase c = random_case(2, 5, 150, 16, ScanOptions().dtype(dtype).seed(11));
      ScanCase c64 = c.to(at::kDouble);
      const at::Tensor conv_out = c64.u;  // the random u plays c
      const at::Tensor sig = at::sigmoid(conv_out);
      c64.u = conv_out * sig;
      const auto ref = scan_test::reference_scan(c64);
      auto [dc, dz] = mamba_lrp::ops::_selective_scan_lrp_bwd_recompute(
          c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, /*overwrite_inputs=*/false,
          /*u_through_silu=*/true);
      const double rtol = dtype == at::kDouble ? 1e-10 : 2e-5;
      check_close(dc, ref.du * sig, rtol);  // the SiLU identity rule: du sigmoid(c)
      check_close(*dz, ref.dz, rtol);
      auto [cdc, cdz] = mamba_lrp::ops::composite::selective_scan_lrp_bwd_recompute(
          c.gout, c.u, c.delta, c.A, c.B, c.C, c.D, c.z, c.bias, true, false, /*u_through_silu=*/true);
      check_close(cdc, ref.du * sig, rtol);
      check_close(*cdz, ref.dz, rtol);
    }
  }
}

TEST_CASE("the scan's output over u equals the scan's own forward", "[scan_recompute]") {
  const ScanCase c = random_case(2, 5, 150, 16, ScanOptions().dtype(at::kFloat).seed(3));
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
