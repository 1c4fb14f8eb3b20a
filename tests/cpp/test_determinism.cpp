// Determinism on the CPU: the same model and input give bitwise the same relevance from run
// to run and with 1 or 2 threads (the reference is the first run itself: any difference,
// however small, is a failure). Both recompute settings, float32 and float64, LM and Vim.
#include "csrc/app/explain/explain.h"
#include "csrc/app/explain/explain_vim.h"
#include "models/init.h"
#include "models/mamba.h"
#include "models/vision_mamba.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

// Restores the thread count at the end of the scope.
struct ThreadCount {
  int saved = at::get_num_threads();
  ~ThreadCount() { at::set_num_threads(saved); }
};

bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.numel() * a.element_size()) == 0;
}

}  // namespace

TEST_CASE("determinism: LM relevance is bitwise equal across runs and thread counts", "[determinism]") {
  ThreadCount restore;
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    mamba_lrp::MambaConfig c;
    c.vocab_size(64).hidden_size(32).state_size(8).num_hidden_layers(2).intermediate_size(64).time_step_rank(4)
        .num_outputs(64);
    mamba_lrp::MambaForCausalLM model(c);
    torch::manual_seed(7);
    mamba_lrp::init_mamba_lm(model);
    model->to(dtype);
    const at::Tensor ids = at::randint(64, {3, 48}, at::TensorOptions().dtype(at::kLong));
    for (const std::string recompute : {"off", "on"}) {
      mamba_lrp::ExplainOptions opt;
      opt.method = "mambalrp";
      opt.recompute = recompute;
      std::vector<at::Tensor> runs;
      for (int threads : {1, 2, 2, 1}) {
        at::set_num_threads(threads);
        runs.push_back(mamba_lrp::explain(model, ids, {}, opt).relevance);
      }
      INFO("dtype " << dtype << ", recompute " << recompute);
      for (size_t k = 1; k < runs.size(); ++k) CHECK(bitwise_equal(runs[0], runs[k]));
    }
  }
}

TEST_CASE("determinism: Vim relevance is bitwise equal across runs and thread counts", "[determinism]") {
  ThreadCount restore;
  mamba_lrp::VimConfig c;
  c.img_size(16).patch_size(4).stride(4).embed_dim(16).depth(2).d_state(4).dt_rank(2).num_classes(5);
  mamba_lrp::VisionMamba model(c);
  torch::manual_seed(11);
  mamba_lrp::init_vision_mamba(model);
  model->to(at::kFloat);
  const at::Tensor pixels = at::randn({2, 3, 16, 16});
  mamba_lrp::VimExplainOptions opt;
  opt.method = "mambalrp";
  std::vector<at::Tensor> runs;
  for (int threads : {1, 2, 2, 1}) {
    at::set_num_threads(threads);
    runs.push_back(mamba_lrp::explain_vim(model, pixels, opt).pixel_relevance);
  }
  for (size_t k = 1; k < runs.size(); ++k) CHECK(bitwise_equal(runs[0], runs[k]));
}
