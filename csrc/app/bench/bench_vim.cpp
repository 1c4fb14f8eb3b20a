// In-process timings of Vision Mamba: the forward and the MambaLRP explanation (default
// MambaLRP-Vim composite, token and pixel relevance, one backward), per batch size, in one
// process, with random weights of the preset's shape. Driven by scripts/bench_vim. Not a test.
//   bench_vim_cpp CONFIG.json B1,B2,... [repeat]
#include <torch/torch.h>

#include <dlfcn.h>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/app/explain/explain_vim.h"
#include "csrc/ops/ops.h"
#include "csrc/app/blas_threads.h"
#include "csrc/app/process_memory.h"
#include "models/vision_mamba.h"
#include "csrc/app/bench/bench_timing.h"

namespace {
// OpenBLAS keeps its own thread pool beside libtorch's intra-op threads: report both.
int openblas_threads() {
  using Fn = int (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn ? fn() : -1;
}
}  // namespace

int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();  // as mamba-lrp does: freed activations are reused, not re-faulted
  mamba_lrp::match_blas_threads_to_intra_op();  // as mamba-lrp does
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_vim_cpp CONFIG.json B1,B2,... [repeat]\n");
    return 2;
  }
  const int repeat = argc > 3 ? std::stoi(argv[3]) : 3;
  std::vector<int64_t> batches;
  std::stringstream ss(argv[2]);
  for (std::string s; std::getline(ss, s, ',');) batches.push_back(std::stoll(s));

  const mamba_lrp::VimConfig cfg = mamba_lrp::VimConfig::from_file(argv[1]);
  torch::manual_seed(0);
  mamba_lrp::VisionMamba model(cfg);  // libtorch's default initialisation; Mamba's A and D
  {
    torch::NoGradGuard g;
    if (model->cls_token.defined()) model->cls_token.normal_(0, 0.02);
    if (model->pos_embed.defined()) model->pos_embed.normal_(0, 0.02);
    for (auto& p : model->parameters()) p.set_requires_grad(false);
  }
  model->eval();
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  std::printf("Vim: embed %ld, depth %ld, %ld tokens, %.1fM parameters; torch threads %d, OpenBLAS threads %d "
              "(-1: not OpenBLAS), CPU scan %s, freed memory retained (as mamba-lrp)\n",
              (long)cfg.embed_dim(), (long)cfg.depth(), (long)cfg.num_tokens(), params / 1e6, at::get_num_threads(),
              openblas_threads(), mamba_lrp::ops::cpu_scan_isa());
  std::printf("%6s %10s %14s %7s | %12s %16s %9s | %14s\n", "batch", "forward s", "explanation s", "ratio",
              "forward cpu", "explanation cpu", "cpu ratio", "explanation/img");
  for (int64_t B : batches) {
    const at::Tensor x = torch::randn({B, cfg.in_chans(), cfg.img_size(), cfg.img_size()});
    mamba_lrp::VimExplainOptions opt;  // mambalrp, the default composite, pixels
    auto forward = [&] {
      torch::NoGradGuard g;
      model->forward(x);
    };
    auto explanation = [&] { mamba_lrp::explain_vim(model, x, opt); };
    forward();
    explanation();  // warm-up
    const auto t = bench::interleaved_medians({forward, explanation}, repeat);
    const bench::Timing &tf = t[0], &te = t[1];
    std::printf("%6ld %10.3f %14.3f %7.2f | %12.3f %16.3f %9.2f | %14.3f\n", (long)B, tf.wall, te.wall,
                te.wall / tf.wall, tf.cpu, te.cpu, te.cpu / tf.cpu, te.wall / B);
    std::fflush(stdout);
  }
  return 0;
}
