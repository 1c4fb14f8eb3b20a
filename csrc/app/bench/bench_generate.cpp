// In-process timings of `mamba-lrp generate` on a Mamba LM (driven by scripts/bench_explain
// --generate). Not a test.
//   bench_generate_cpp MODEL_DIR PROMPT_LEN NEW_TOKENS [SEPARATE] [all|generation]
// 1. Generation: the step mode (one forward over the prompt, then the recurrent step per
//    token) against recomputing the whole prefix's forward for every new token; per token.
//    The recompute (the backbone over the prefix, the head at its last position only) is
//    timed on SEPARATE tokens spread over the run (default 8) and reported per token.
// 2. Explanation of every generated token: the batched MambaLRP (one forward, one backward
//    carrying NEW_TOKENS cotangents) against NEW_TOKENS separate explain() calls, of which
//    SEPARATE (spread evenly over the tokens) are timed and scaled to all of them.
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "csrc/app/bench/bench_timing.h"
#include "csrc/app/explain/explain.h"
#include "csrc/app/generate/generate.h"
#include "csrc/app/blas_threads.h"
#include "csrc/app/process_memory.h"
#include "csrc/ops/ops.h"
#include "models/mamba.h"

int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();
  mamba_lrp::match_blas_threads_to_intra_op();  // as mamba-lrp does
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_generate_cpp MODEL_DIR PROMPT_LEN NEW_TOKENS [SEPARATE] [all|generation]\n");
    return 2;
  }
  const int64_t P = std::stoll(argv[2]), G = std::stoll(argv[3]), S = argc > 4 ? std::stoll(argv[4]) : 8;
  const bool explanations = argc <= 5 || std::string(argv[5]) != "generation";
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(argv[1], at::kFloat);
  torch::manual_seed(0);
  const at::Tensor prompt_t = torch::randint(0, model->config().vocab_size(), {P}, at::kLong);
  const std::vector<int64_t> prompt(prompt_t.data_ptr<int64_t>(), prompt_t.data_ptr<int64_t>() + P);
  std::printf("threads %d, CPU scan %s; prompt %lld, %lld new tokens\n", at::get_num_threads(),
              mamba_lrp::ops::cpu_scan_isa(), (long long)P, (long long)G);

  // ---- generation
  mamba_lrp::GenerateOptions gopt;
  gopt.max_new_tokens = G;
  mamba_lrp::generate_greedy(model, prompt, {}, gopt);  // warm-up
  double t0 = bench::now_s();
  std::vector<mamba_lrp::SsmState> state;
  model->prefill(prompt_t.unsqueeze(0), {}, state);
  const double t_prefill = bench::now_s() - t0;
  t0 = bench::now_s();
  for (int64_t k = 0; k < G; ++k) model->step(prompt_t.narrow(0, k % P, 1), state);
  const double t_step = (bench::now_s() - t0) / G;
  const mamba_lrp::Generation gen = mamba_lrp::generate_greedy(model, prompt, {}, gopt);
  std::vector<int64_t> seq = prompt;
  seq.insert(seq.end(), gen.generated_ids.begin(), gen.generated_ids.end());
  const at::Tensor seq_t = torch::tensor(seq, at::kLong).unsqueeze(0);  // (1, P + G)
  double t_recompute = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t len = P + s * G / S;  // the prefix that predicts token s * G / S
    torch::NoGradGuard g;
    t0 = bench::now_s();
    model->head(model->hidden_states(model->embed(seq_t.narrow(1, 0, len))).select(1, len - 1));
    t_recompute += bench::now_s() - t0;
  }
  t_recompute /= S;
  std::printf("generation: prefill %.3f s; per new token: step %.5f s, prefix recompute %.4f s -> %.1fx (%.1f vs %.2f "
              "tokens/s)\n",
              t_prefill, t_step, t_recompute, t_recompute / t_step, 1 / t_step, 1 / t_recompute);

  std::fflush(stdout);
  if (!explanations) return 0;

  // ---- explanations of all G tokens
  mamba_lrp::ExplainOptions eopt;  // mambalrp, default composite
  t0 = bench::now_s();
  mamba_lrp::explain_generation(model, gen, eopt);
  const double t_batched = bench::now_s() - t0;
  double t_separate = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t k = s * G / S, len = P + k;
    mamba_lrp::ExplainOptions one = eopt;
    one.targets = {gen.generated_ids[k]};
    t0 = bench::now_s();
    mamba_lrp::explain(model, seq_t.narrow(1, 0, len), {}, one);
    t_separate += bench::now_s() - t0;
  }
  t_separate *= static_cast<double>(G) / S;
  std::printf("explanations of all %lld tokens: batched %.2f s, separate %.2f s (%lld timed, scaled) -> %.2fx\n",
              (long long)G, t_batched, t_separate, (long long)S, t_batched / t_separate);
  return 0;
}
