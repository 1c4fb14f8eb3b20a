// A TorchScript module that calls torch.ops.mamba_lrp.* (written by
// tests/python/make_torchscript_fixture.py) loaded and run from C++: forward and the
// MambaLRP relevance must equal what eager Python computed.
#include <torch/script.h>
#include <torch/torch.h>
// After torch: c10's logging defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

TEST_CASE("scripted module with mamba_lrp ops runs in C++ like eager Python", "[torchscript]") {
  const char* path = std::getenv("MAMBA_LRP_TORCHSCRIPT_FIXTURE");
  REQUIRE(path != nullptr);
  REQUIRE(std::ifstream(path).good());
  torch::jit::Module m = torch::jit::load(path);
  const torch::Tensor x_in = m.attr("x_in").toTensor();
  const torch::Tensor z_in = m.attr("z_in").toTensor();
  const torch::Tensor expected_out = m.attr("expected_out").toTensor();
  const torch::Tensor expected_relevance = m.attr("expected_relevance").toTensor();

  torch::Tensor x = x_in.clone().requires_grad_(true);
  torch::Tensor out = m.forward({x, z_in}).toTensor();
  CHECK(torch::equal(out.detach(), expected_out));
  out.sum().backward();
  torch::Tensor relevance = x.detach() * x.grad();
  CHECK(torch::allclose(relevance, expected_relevance, /*rtol=*/0, /*atol=*/0));
  // The relevance is not the plain gradient: the rules changed it.
  torch::NoGradGuard no_grad;
  CHECK(relevance.abs().sum().item<double>() > 0);
}
