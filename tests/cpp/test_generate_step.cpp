// The recurrent step mode of the Mamba LM (models/mamba.h prefill / step) against the full
// forward over the same tokens, in float64, batch 2 with and without a left-padding mask.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "models/init.h"
#include "models/mamba.h"

using namespace mamba_lrp;

namespace {

MambaForCausalLM small_lm() {
  MambaConfig c;
  c.vocab_size(50).hidden_size(16).state_size(4).num_hidden_layers(2).intermediate_size(32).time_step_rank(2)
      .num_outputs(50);
  torch::manual_seed(7);
  MambaForCausalLM m(c);
  init_mamba_lm(m);
  m->to(at::kDouble);
  m->eval();
  return m;
}

// float64: the step's plain tensor ops against the scan kernel, same terms summed in other
// orders; 1e-10 of the largest logit is rounding only.
void check_steps(bool masked) {
  MambaForCausalLM m = small_lm();
  const int64_t P = 6, G = 7;
  torch::manual_seed(3);
  const at::Tensor seq = torch::randint(0, 50, {2, P + G}, at::kLong);  // (2, P + G): prompt, then fed tokens
  at::Tensor mask;                                                      // (2, P + G)
  if (masked) {
    mask = torch::ones({2, P + G}, at::kLong);
    mask[1].narrow(0, 0, 3).zero_();  // row 1: three padded steps in front
  }
  std::vector<SsmState> state;
  std::vector<at::Tensor> steps = {m->prefill(seq.narrow(1, 0, P), masked ? mask.narrow(1, 0, P) : mask, state)};
  for (int64_t k = 0; k < G - 1; ++k) steps.push_back(m->step(seq.select(1, P + k), state));
  const at::Tensor stepped = at::stack(steps, 1);  // (2, G, V)
  torch::NoGradGuard g;
  const at::Tensor full = m->forward(seq.narrow(1, 0, P + G - 1), masked ? mask.narrow(1, 0, P + G - 1).to(at::kDouble)
                                                                          : at::Tensor())
                              .narrow(1, P - 1, G);  // (2, G, V)
  REQUIRE(stepped.scalar_type() == at::kDouble);
  const double err = (stepped - full).abs().max().item<double>() / full.abs().max().item<double>();
  REQUIRE(err < 1e-10);
}

}  // namespace

TEST_CASE("step mode equals the full forward at every step (float64)", "[generate]") {
  SECTION("no mask") { check_steps(false); }
  SECTION("left-padding mask") { check_steps(true); }
}

TEST_CASE("step mode: a prompt shorter than the conv window", "[generate]") {
  MambaForCausalLM m = small_lm();
  const at::Tensor seq = torch::tensor({3, 14, 27}, at::kLong).unsqueeze(0);  // (1, 3), conv_kernel 4
  std::vector<SsmState> state;
  const at::Tensor first = m->prefill(seq.narrow(1, 0, 1), {}, state);
  REQUIRE(state.size() == 2);
  REQUIRE(state[0].conv_window.sizes() == at::IntArrayRef({1, 32, 3}));
  const at::Tensor second = m->step(seq.select(1, 1), state), third = m->step(seq.select(1, 2), state);
  torch::NoGradGuard g;
  const at::Tensor full = m->forward(seq);  // (1, 3, V)
  REQUIRE(at::allclose(first, full.select(1, 0), 0, 1e-12));
  REQUIRE(at::allclose(second, full.select(1, 1), 0, 1e-12));
  REQUIRE(at::allclose(third, full.select(1, 2), 0, 1e-12));
}
