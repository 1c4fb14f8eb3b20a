// In-process timings of a MambaLRP explanation of a Mamba LM: load, forward, explanation,
// for several lengths, in one process. Driven by scripts/bench_explain (which also measures
// whole-process wall time and peak RSS). Not a test.
//   bench_explain_cpp MODEL_DIR L1,L2,... [repeat]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/explain/explain.h"
#include "csrc/ops.h"
#include "models/mamba.h"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
template <typename Fn>
double median_time(Fn fn, int repeat) {
  std::vector<double> t;
  for (int i = 0; i < repeat; ++i) {
    const double t0 = now_s();
    fn();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_explain_cpp MODEL_DIR L1,L2,... [repeat]\n");
    return 2;
  }
  const int repeat = argc > 3 ? std::stoi(argv[3]) : 3;
  std::vector<int64_t> lengths;
  std::stringstream ss(argv[2]);
  for (std::string s; std::getline(ss, s, ',');) lengths.push_back(std::stoll(s));

  const double t0 = now_s();
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(argv[1], at::kFloat);
  const double t_load = now_s() - t0;
  std::printf("threads %d, CPU scan %s, load %.3f s\n", at::get_num_threads(), mamba_lrp::cpu_scan_isa(), t_load);
  std::printf("%6s %12s %14s %8s\n", "L", "forward s", "explanation s", "ratio");
  torch::manual_seed(0);
  for (int64_t L : lengths) {
    const at::Tensor ids = torch::randint(0, model->config().vocab_size(), {1, L}, at::kLong);
    mamba_lrp::ExplainOptions opt;
    // The forward an explanation needs: the backbone and the head at the last position.
    auto forward = [&] {
      torch::NoGradGuard g;
      model->head(model->hidden_states(model->embed(ids)).select(1, L - 1));
    };
    auto explanation = [&] { mamba_lrp::explain(model, ids, {}, opt); };
    forward();
    explanation();  // warm-up
    const double tf = median_time(forward, repeat), te = median_time(explanation, repeat);
    std::printf("%6ld %12.3f %14.3f %8.2f\n", (long)L, tf, te, te / tf);
    std::fflush(stdout);
  }
  return 0;
}
