// In-process timings of `mamba-lrp generate` on a Mamba LM (driven by scripts/bench_explain
// --generate). Not a test.
//   bench_generate_cpp MODEL_DIR PROMPT_LEN NEW_TOKENS [SEPARATE] [all|generation|before-after [ROUNDS]]
// 1. Generation: the step mode (one forward over the prompt, then the recurrent step per
//    token) against recomputing the whole prefix's forward for every new token; per token.
//    The recompute (the backbone over the prefix, the head at its last position only) is
//    timed on SEPARATE tokens spread over the run (default 8) and reported per token.
// 2. Explanation of every generated token: the batched MambaLRP (one forward, one backward
//    carrying NEW_TOKENS cotangents) against NEW_TOKENS separate explain() calls, of which
//    SEPARATE (spread evenly over the tokens) are timed and scaled to all of them.
// before-after: instead of 1 and 2, the batched explanation as it was before the chunked,
//    channel-major backward (bench/batched_lrp_before.cpp) and as it is, ROUNDS times each
//    (default 2), interleaved in alternating order, then the SEPARATE explanations; each
//    against the separate ones, and the largest difference between the two batched results.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "csrc/app/bench/batched_lrp_before.h"
#include "csrc/app/bench/bench_timing.h"
#include "csrc/app/generate/batched_lrp.h"
#include "csrc/app/explain/explain.h"
#include "csrc/app/generate/generate.h"
#include "csrc/app/blas_threads.h"
#include "csrc/app/process_memory.h"
#include "csrc/ops/ops.h"
#include "models/mamba.h"

namespace {

// The batched explanation before and after the chunked backward, interleaved, against
// separate explain() calls (SEPARATE of them timed, scaled to all G).
int before_after(mamba_lrp::MambaForCausalLM& model, const std::vector<int64_t>& prompt,
                 const mamba_lrp::GenerateOptions& gopt, int64_t S, int64_t rounds) {
  const int64_t P = static_cast<int64_t>(prompt.size());
  const mamba_lrp::Generation gen = mamba_lrp::generate_greedy(model, prompt, {}, gopt);
  const int64_t G = static_cast<int64_t>(gen.generated_ids.size());
  std::vector<int64_t> seq = prompt;
  seq.insert(seq.end(), gen.generated_ids.begin(), gen.generated_ids.end());
  const at::Tensor seq_t = torch::tensor(seq, at::kLong).unsqueeze(0);             // (1, P + G)
  const at::Tensor ids = seq_t.narrow(1, 0, P + G - 1);                            // the explained context
  const at::Tensor positions = torch::arange(P - 1, P - 1 + G, at::kLong);
  const at::Tensor targets = torch::tensor(gen.generated_ids, at::kLong);
  // Wall time and this process's CPU time (std::clock): on a shared machine the CPU time is
  // what other processes disturb least (the explanation runs on libtorch's intra-op threads).
  std::vector<double> before, after, before_cpu, after_cpu;
  at::Tensor r_before, r_after;
  auto cpu_s = [] { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; };
  for (int64_t round = 0; round < rounds; ++round) {
    for (int which = 0; which < 2; ++which) {
      const bool run_before = (which == 0) == (round % 2 == 0);  // before first in even rounds
      const double t0 = bench::now_s(), c0 = cpu_s();
      if (run_before)
        r_before = mamba_lrp::mambalrp_batched_before(model, ids, {}, positions, targets).relevance;
      else
        r_after = mamba_lrp::mambalrp_batched(model, ids, {}, positions, targets).relevance;
      (run_before ? before : after).push_back(bench::now_s() - t0);
      (run_before ? before_cpu : after_cpu).push_back(cpu_s() - c0);
      std::printf("round %lld: %s %.2f s (CPU %.2f s)\n", (long long)round, run_before ? "before" : "after ",
                  (run_before ? before : after).back(), (run_before ? before_cpu : after_cpu).back());
      std::fflush(stdout);
    }
  }
  double t_separate = 0, c_separate = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t k = s * G / S;
    mamba_lrp::ExplainOptions one;
    one.targets = {gen.generated_ids[k]};
    const double t0 = bench::now_s(), c0 = cpu_s();
    mamba_lrp::explain(model, seq_t.narrow(1, 0, P + k), {}, one);
    t_separate += bench::now_s() - t0;
    c_separate += cpu_s() - c0;
  }
  t_separate *= static_cast<double>(G) / S;
  c_separate *= static_cast<double>(G) / S;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  const double diff = (r_before - r_after).abs().max().item<double>() / r_before.abs().max().item<double>();
  std::printf("explanations of all %lld tokens (medians of %lld): before %.2f s (%.3fx), after %.2f s (%.3fx), "
              "separate %.2f s (%lld timed, scaled); after/before %.3f; max |before - after| / max |R| = %.2g\n",
              (long long)G, (long long)rounds, median(before), median(before) / t_separate, median(after),
              median(after) / t_separate, t_separate, (long long)S, median(after) / median(before), diff);
  std::printf("CPU time: before %.2f s (%.3fx), after %.2f s (%.3fx), separate %.2f s; after/before %.3f\n",
              median(before_cpu), median(before_cpu) / c_separate, median(after_cpu), median(after_cpu) / c_separate,
              c_separate, median(after_cpu) / median(before_cpu));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mamba_lrp::retain_freed_memory();
  mamba_lrp::match_blas_threads_to_intra_op();  // as mamba-lrp does
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_generate_cpp MODEL_DIR PROMPT_LEN NEW_TOKENS [SEPARATE] [all|generation]\n");
    return 2;
  }
  const int64_t P = std::stoll(argv[2]), G = std::stoll(argv[3]), S = argc > 4 ? std::stoll(argv[4]) : 8;
  const std::string mode = argc > 5 ? argv[5] : "all";
  const bool explanations = mode != "generation";
  if (mode != "all" && mode != "generation" && mode != "before-after") {
    std::fprintf(stderr, "bench_generate_cpp: mode must be all, generation or before-after, got %s\n", mode.c_str());
    return 2;
  }
  mamba_lrp::MambaForCausalLM model = mamba_lrp::load_mamba_lm(argv[1], at::kFloat);
  torch::manual_seed(0);
  const at::Tensor prompt_t = torch::randint(0, model->config().vocab_size(), {P}, at::kLong);
  const std::vector<int64_t> prompt(prompt_t.data_ptr<int64_t>(), prompt_t.data_ptr<int64_t>() + P);
  std::printf("threads %d, CPU scan %s; prompt %lld, %lld new tokens\n", at::get_num_threads(),
              mamba_lrp::ops::cpu_scan_isa(), (long long)P, (long long)G);

  mamba_lrp::GenerateOptions gopt;
  gopt.max_new_tokens = G;
  if (mode == "before-after") return before_after(model, prompt, gopt, S, argc > 6 ? std::stoll(argv[6]) : 2);

  // ---- generation
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
