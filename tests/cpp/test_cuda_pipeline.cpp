// The C++ API on CUDA: a model moved with ->to(torch::kCUDA) explains through the same
// dispatcher ops as on the CPU, and equals the same weights in float64 on the CPU; zero-size
// scan inputs on CUDA. Tagged [cuda] (ctest cpp_tests_cuda, label cuda): without a GPU each
// returns early with a warning. The [device] case checks the plumbing on the CPU.
#include <torch/torch.h>

#include <array>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "csrc/app/explain/explain.h"
#include "csrc/ops/ops.h"
#include "models/init.h"

namespace {

// A small Mamba LM with the weights init_mamba_lm draws after torch::manual_seed(seed).
mamba_lrp::MambaForCausalLM small_lm(uint64_t seed) {
  const nlohmann::json config = {{"model_type", "mamba"}, {"vocab_size", 64},       {"hidden_size", 32},
                                 {"state_size", 16},      {"num_hidden_layers", 2}, {"layer_norm_epsilon", 1e-5},
                                 {"expand", 2},           {"conv_kernel", 4},       {"time_step_rank", "auto"},
                                 {"use_bias", false},     {"use_conv_bias", true},  {"residual_in_fp32", true},
                                 {"tie_word_embeddings", true}};
  mamba_lrp::MambaForCausalLM model(mamba_lrp::MambaConfig::from_json(config, "test config"));
  torch::manual_seed(seed);
  mamba_lrp::init_mamba_lm(model);
  return model;
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor bd = b.to(torch::kDouble).cpu();
  return ((a.to(torch::kDouble).cpu() - bd).abs().max() / bd.abs().max()).item<double>();
}

}  // namespace

TEST_CASE("explain on a model moved to CUDA equals the CPU float64 explanation", "[cuda]") {
  if (!torch::cuda::is_available()) {
    WARN("no CUDA device: CUDA explain test skipped");
    return;
  }
  mamba_lrp::MambaForCausalLM gpu = small_lm(5), cpu = small_lm(5);
  gpu->to(torch::kCUDA);
  cpu->to(torch::kDouble);
  torch::manual_seed(6);
  const torch::Tensor ids = torch::randint(0, 64, {2, 12}, torch::kLong);  // on the CPU: explain moves them
  for (const char* method : {"mambalrp", "gi"}) {
    for (const char* recompute : {"off", "on"}) {
      mamba_lrp::ExplainOptions opt;
      opt.method = method;
      opt.recompute = recompute;
      const mamba_lrp::Explanation g = mamba_lrp::explain(gpu, ids, {}, opt);
      const mamba_lrp::Explanation c = mamba_lrp::explain(cpu, ids, {}, opt);
      CHECK(g.relevance.is_cuda());
      CHECK(torch::equal(g.targets.cpu(), c.targets));
      // float32 on the GPU against float64: 2e-3 of the scale, the reason stated in
      // tests/python/test_cuda_explain.py (cuDNN may run the conv1d in TF32).
      CHECK(rel_err(g.relevance, c.relevance) < 2e-3);
      CHECK(rel_err(g.logits, c.logits) < 2e-3);
    }
  }
}

TEST_CASE("zero-size scan inputs on CUDA from C++", "[cuda]") {
  if (!torch::cuda::is_available()) {
    WARN("no CUDA device: CUDA zero-size test skipped");
    return;
  }
  const auto f = torch::TensorOptions().device(torch::kCUDA);
  for (auto [batch, dim, seqlen] : {std::array<int64_t, 3>{2, 3, 0}, {0, 3, 5}, {2, 0, 5}}) {
    const torch::Tensor u = torch::randn({batch, dim, seqlen}, f), delta = torch::randn({batch, dim, seqlen}, f);
    const torch::Tensor A = -torch::rand({dim, 4}, f) - 0.5, B = torch::randn({batch, 4, seqlen}, f),
                        C = torch::randn({batch, 4, seqlen}, f);
    auto [out, last] = mamba_lrp::ops::selective_scan(u, delta, A, B, C, {}, {}, {}, true, true, "mambalrp");
    CHECK(out.sizes() == u.sizes());
    REQUIRE(last.has_value());
    CHECK(last->sizes() == torch::IntArrayRef({batch, dim, 4}));
    CHECK(torch::count_nonzero(*last).item<int64_t>() == 0);  // no step: the state stays 0
  }
}

TEST_CASE("explain takes inputs from any device to the model's and back with cpu()", "[device]") {
  // On the CPU only: int32 ids on the CPU for a model moved with ->to(kCPU, kDouble); the
  // explanation lives where the model is, and cpu() gives the same values.
  mamba_lrp::MambaForCausalLM model = small_lm(7), reference = small_lm(7);
  model->to(torch::kCPU, torch::kDouble);
  reference->to(torch::kDouble);
  const torch::Tensor ids = torch::tensor({3, 9, 27, 4, 11}, torch::kInt);
  const mamba_lrp::Explanation e = mamba_lrp::explain(model, ids, {}, {});
  const mamba_lrp::Explanation r = mamba_lrp::explain(reference, ids.to(torch::kLong), {}, {});
  CHECK(e.relevance.device().is_cpu());
  CHECK(torch::equal(e.relevance, r.relevance));
  const mamba_lrp::Explanation c = e.cpu();
  CHECK(torch::equal(c.relevance, e.relevance));
  CHECK(torch::equal(c.targets, e.targets));
  CHECK(torch::equal(c.positions, e.positions));
}
