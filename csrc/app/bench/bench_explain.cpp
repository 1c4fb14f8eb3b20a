// In-process timings of a MambaLRP explanation of a Mamba LM: load, forward, explanation
// keeping every activation (--recompute off) and recomputing the SSM branches (on), for
// several lengths, in one process. Driven by scripts/bench_explain (which also measures
// whole-process wall time and peak RSS). Not a test.
//   bench_explain_cpp MODEL_DIR L1,L2,... [repeat] [device]
// device: cpu (default) or cuda; each timed call ends with its result copied to the CPU, so
// a CUDA time includes the wait for the GPU.
#include <torch/torch.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/app/explain/explain.h"
#include "csrc/ops/ops.h"
#include "csrc/app/blas_threads.h"
#include "csrc/app/process_memory.h"
#include "models/mamba.h"
#include "csrc/app/bench/bench_timing.h"


int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();  // as mamba-lrp does: freed activations are reused, not re-faulted
  const int blas_threads = mamba_lrp::match_blas_threads_to_intra_op();  // as mamba-lrp does
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_explain_cpp MODEL_DIR L1,L2,... [repeat] [cpu|cuda]\n");
    return 2;
  }
  const int repeat = argc > 3 ? std::stoi(argv[3]) : 3;
  const c10::Device device(argc > 4 ? argv[4] : "cpu");
  std::vector<int64_t> lengths;
  std::stringstream ss(argv[2]);
  for (std::string s; std::getline(ss, s, ',');) lengths.push_back(std::stoll(s));

  const double t0 = bench::now_s();
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(argv[1], at::kFloat);
  model->to(device);
  const double t_load = bench::now_s() - t0;
  std::printf("device %s, threads %d, OpenBLAS threads %s, CPU scan %s, freed memory retained (as mamba-lrp), load %.3f s\n",
              device.str().c_str(), at::get_num_threads(),
              blas_threads ? std::to_string(blas_threads).c_str() : "as the environment says",
              mamba_lrp::ops::cpu_scan_isa(), t_load);
  std::printf("%6s %10s %16s %8s %16s %8s\n", "L", "forward s", "expl. (keep) s", "ratio", "expl. (recomp) s",
              "ratio");
  torch::manual_seed(0);
  for (int64_t L : lengths) {
    const at::Tensor ids = torch::randint(0, model->config().vocab_size(), {1, L}, at::kLong).to(device);
    // The forward an explanation needs: the backbone and the head at the last position.
    auto forward = [&] {
      torch::NoGradGuard g;
      model->head(model->hidden_states(model->embed(ids)).select(1, L - 1)).cpu();
    };
    auto explanation = [&](const char* recompute) {
      mamba_lrp::ExplainOptions opt;
      opt.recompute = recompute;
      return [&model, &ids, opt] { mamba_lrp::explain(model, ids, {}, opt).cpu(); };
    };
    forward();
    explanation("off")();  // warm-up
    const auto t = bench::interleaved_medians({forward, explanation("off"), explanation("on")}, repeat);
    const double tf = t[0].wall, keep = t[1].wall, recomp = t[2].wall;
    std::printf("%6ld %10.3f %16.3f %8.2f %16.3f %8.2f\n", (long)L, tf, keep, keep / tf, recomp, recomp / tf);
    std::fflush(stdout);
  }
  return 0;
}
