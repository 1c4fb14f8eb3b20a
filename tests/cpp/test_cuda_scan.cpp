// The CUDA selective scan against the CPU op, through the C++ API (the dispatcher picks
// the CUDA kernels for CUDA tensors). Tagged [cuda]: ctest runs them as cpp_tests_cuda
// (label cuda); without a GPU each test returns early with a warning. Compiles against a
// CPU-only libtorch too: only torch/torch.h APIs.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "csrc/ops/ops.h"

using Catch::Matchers::Contains;

namespace {

#define SKIP_WITHOUT_CUDA()                                          \
  do {                                                               \
    if (!torch::cuda::is_available()) {                              \
      WARN("no CUDA device: CUDA selective-scan test skipped");      \
      return;                                                        \
    }                                                                \
  } while (0)

struct Inputs {
  torch::Tensor u, delta, A, B, C, D, z, delta_bias;
  Inputs to(const torch::TensorOptions& in_opts, const torch::TensorOptions& w_opts) const {
    Inputs o;
    o.u = u.to(in_opts);
    o.delta = delta.to(in_opts);
    o.z = z.to(in_opts);
    o.B = B.to(in_opts);
    o.C = C.to(in_opts);
    o.A = A.to(w_opts);
    o.D = D.to(w_opts);
    o.delta_bias = delta_bias.to(w_opts);
    return o;
  }
  std::vector<torch::Tensor> all() const { return {u, delta, A, B, C, D, z, delta_bias}; }
};

// Mamba-like ranges: A = -exp(.), softplus(delta + bias) around 0.3.
Inputs make_inputs(int64_t batch, int64_t dim, int64_t seqlen, int64_t dstate, int64_t groups, uint64_t seed) {
  torch::manual_seed(seed);
  const auto f = torch::TensorOptions().dtype(torch::kFloat);
  Inputs x;
  x.u = torch::randn({batch, dim, seqlen}, f);                       // (B, D, L)
  x.delta = 0.5 * torch::randn({batch, dim, seqlen}, f) - 1.0;       // (B, D, L)
  x.A = -torch::exp(0.5 * torch::randn({dim, dstate}, f));           // (D, N)
  x.B = torch::randn({batch, groups, dstate, seqlen}, f);            // (B, G, N, L)
  x.C = torch::randn({batch, groups, dstate, seqlen}, f);            // (B, G, N, L)
  x.D = torch::randn({dim}, f);                                      // (D)
  x.z = torch::randn({batch, dim, seqlen}, f);                       // (B, D, L)
  x.delta_bias = 0.3 * torch::randn({dim}, f);                       // (D)
  return x;
}

// max |a - b| / max |b|: a relative error that does not blow up where b crosses zero.
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const auto a64 = a.detach().to(torch::kCPU, torch::kDouble);
  const auto b64 = b.detach().to(torch::kCPU, torch::kDouble);
  const double scale = b64.abs().max().item<double>();
  return (a64 - b64).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
}

std::tuple<torch::Tensor, torch::Tensor> run(const Inputs& x, const std::string& rule, bool with_z = true) {
  auto [out, last] = mamba_lrp::ops::selective_scan(x.u, x.delta, x.A, x.B, x.C, x.D,
                                               with_z ? c10::optional<at::Tensor>(x.z) : c10::nullopt, x.delta_bias,
                                               /*delta_softplus=*/true, /*return_last_state=*/true, rule);
  return {out, *last};
}

// Gradients of sum(out * w) + sum(last * v) with respect to every input.
std::vector<torch::Tensor> grads(const Inputs& x, const std::string& rule, const torch::Tensor& w,
                                 const torch::Tensor& v) {
  std::vector<torch::Tensor> leaves;
  Inputs y;
  auto leaf = [&](const torch::Tensor& t) {
    auto l = t.detach().clone().requires_grad_(true);
    leaves.push_back(l);
    return l;
  };
  y.u = leaf(x.u);
  y.delta = leaf(x.delta);
  y.A = leaf(x.A);
  y.B = leaf(x.B);
  y.C = leaf(x.C);
  y.D = leaf(x.D);
  y.z = leaf(x.z);
  y.delta_bias = leaf(x.delta_bias);
  auto [out, last] = run(y, rule);
  auto loss = (out * w.to(out.options())).sum() + (last * v.to(last.options())).sum();
  loss.backward();
  std::vector<torch::Tensor> g;
  for (auto& l : leaves) g.push_back(l.grad());
  return g;
}

const char* kNames[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};

// (batch, dim, seqlen, dstate, groups): a Mamba-130M layer cut down, chunk crossings,
// odd sizes, groups, the largest dstate.
const std::vector<std::vector<int64_t>> kShapes = {
    {2, 16, 200, 16, 1}, {1, 6, 1, 1, 1}, {2, 12, 77, 5, 3}, {1, 8, 130, 40, 2}, {1, 4, 40, 256, 1},
};

}  // namespace

TEST_CASE("CUDA selective_scan forward equals the CPU op (float32)", "[cuda]") {
  SKIP_WITHOUT_CUDA();
  for (const auto& s : kShapes) {
    INFO("shape " << s[0] << "x" << s[1] << "x" << s[2] << " dstate " << s[3] << " groups " << s[4]);
    const Inputs cpu = make_inputs(s[0], s[1], s[2], s[3], s[4], 1);
    const Inputs gpu = cpu.to(torch::kCUDA, torch::kCUDA);
    for (bool with_z : {true, false}) {
      auto [out_c, last_c] = run(cpu, "exact", with_z);
      auto [out_g, last_g] = run(gpu, "exact", with_z);
      CHECK(out_g.is_cuda());
      CHECK(last_g.scalar_type() == torch::kFloat);
      // float32 against float32: different summation order and exp; 1e-5 of the scale.
      CHECK(rel_err(out_g, out_c) < 1e-5);
      CHECK(rel_err(last_g, last_c) < 1e-5);
    }
  }
}

TEST_CASE("CUDA selective_scan MambaLRP backward equals the CPU op and is deterministic", "[cuda]") {
  SKIP_WITHOUT_CUDA();
  for (const auto& s : kShapes) {
    INFO("shape " << s[0] << "x" << s[1] << "x" << s[2] << " dstate " << s[3] << " groups " << s[4]);
    const Inputs cpu = make_inputs(s[0], s[1], s[2], s[3], s[4], 2);
    const Inputs gpu = cpu.to(torch::kCUDA, torch::kCUDA);
    const auto w = torch::randn({s[0], s[1], s[2]});
    const auto v = torch::randn({s[0], s[1], s[3]});
    const auto gc = grads(cpu, "mambalrp", w, v);
    const auto gg = grads(gpu, "mambalrp", w, v);
    const auto gg2 = grads(gpu, "mambalrp", w, v);
    for (int i = 0; i < 8; ++i) {
      INFO("gradient of " << kNames[i]);
      CHECK(gc[i].defined() == gg[i].defined());
      if (!gc[i].defined() || !gg[i].defined()) continue;
      CHECK(rel_err(gg[i], gc[i]) < 1e-5);
      CHECK(torch::equal(gg[i], gg2[i]));  // no atomics: bitwise reproducible
    }
    CHECK_FALSE(gg[1].defined());  // delta: a constant under the SSM rule
    CHECK_FALSE(gg[2].defined());  // A
  }
}

TEST_CASE("CUDA selective_scan exact gradients equal the CPU float64 op", "[cuda]") {
  SKIP_WITHOUT_CUDA();
  for (const auto& s : kShapes) {
    INFO("shape " << s[0] << "x" << s[1] << "x" << s[2] << " dstate " << s[3] << " groups " << s[4]);
    const Inputs x = make_inputs(s[0], s[1], s[2], s[3], s[4], 3);
    const Inputs cpu64 = x.to(torch::kDouble, torch::kDouble);
    const Inputs gpu = x.to(torch::kCUDA, torch::kCUDA);
    const auto w = torch::randn({s[0], s[1], s[2]});
    const auto v = torch::randn({s[0], s[1], s[3]});
    const auto gc = grads(cpu64, "exact", w.to(torch::kDouble), v.to(torch::kDouble));
    const auto gg = grads(gpu, "exact", w, v);
    for (int i = 0; i < 8; ++i) {
      INFO("gradient of " << kNames[i]);
      REQUIRE(gg[i].defined());
      // float32 (atomics in any order, sums over up to batch * seqlen terms) against
      // float64: 1e-4 of the gradient's scale.
      CHECK(rel_err(gg[i], gc[i]) < 1e-4);
    }
  }
}

TEST_CASE("CUDA selective_scan float16 and bfloat16 inputs", "[cuda]") {
  SKIP_WITHOUT_CUDA();
  const Inputs x = make_inputs(2, 16, 300, 16, 1, 4);
  for (auto dt : {torch::kHalf, torch::kBFloat16}) {
    INFO("dtype " << dt);
    // The reference sees the same rounded inputs, computed in float32 on the CPU.
    const Inputs rounded = x.to(torch::TensorOptions().dtype(dt), torch::kFloat).to(torch::kFloat, torch::kFloat);
    const Inputs gpu = x.to(torch::TensorOptions().dtype(dt).device(torch::kCUDA), torch::kCUDA);
    auto [out_c, last_c] = run(rounded, "mambalrp");
    auto [out_g, last_g] = run(gpu, "mambalrp");
    CHECK(out_g.scalar_type() == dt);
    CHECK(last_g.scalar_type() == torch::kFloat);
    // Only the output's rounding to 8 (bf16) or 11 (fp16) bits differs: 2^-7 / 2^-10
    // relative per element, with margin.
    const double tol = dt == torch::kHalf ? 2e-3 : 1.6e-2;
    CHECK(rel_err(out_g, out_c) < tol);
    CHECK(rel_err(last_g, last_c) < 1e-4);  // the state is float32 throughout
    const auto w = torch::randn({2, 16, 300});
    const auto v = torch::randn({2, 16, 16});
    const auto gc = grads(rounded, "mambalrp", w, v);
    const auto gg = grads(gpu, "mambalrp", w, v);
    CHECK(rel_err(gg[0], gc[0]) < tol);  // du
    CHECK(rel_err(gg[6], gc[6]) < tol);  // dz
  }
}

TEST_CASE("CUDA selective_scan refuses mixed devices and float64", "[cuda]") {
  SKIP_WITHOUT_CUDA();
  const Inputs cpu = make_inputs(1, 4, 8, 4, 1, 5);
  Inputs gpu = cpu.to(torch::kCUDA, torch::kCUDA);
  Inputs mixed = gpu;
  mixed.delta = cpu.delta;  // delta left on the CPU
  CHECK_THROWS_WITH(run(mixed, "exact"), Contains("delta") && Contains("one device"));
  Inputs f64 = cpu.to(torch::TensorOptions().dtype(torch::kDouble).device(torch::kCUDA), torch::kCUDA);
  CHECK_THROWS_WITH(run(f64, "exact"), Contains("float32, float16 or bfloat16"));
  CHECK_THROWS_WITH(run(gpu, "lrp"), Contains("rule"));
}
