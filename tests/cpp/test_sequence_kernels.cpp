// The sequence kernels around the scan (internal ops of csrc/ops/ops.h) against
// scalar loops written here in float64: causal depthwise conv1d with its SiLU, the conv's
// input gradient, and the flip-add of Vision Mamba's bidirectional glue.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <cmath>

#include "csrc/ops/ops.h"

namespace {

using torch::indexing::Slice;

// out[b,c,t] = bias[c] + sum_k w[c,k] x[b,c,t-(K-1)+k], zeros before t = 0.
torch::Tensor naive_causal_conv(const torch::Tensor& x_in, const torch::Tensor& w_in, const torch::Tensor& bias_in) {
  const torch::Tensor x = x_in.to(torch::kFloat64), w = w_in.to(torch::kFloat64);
  const int64_t B = x.size(0), C = x.size(1), L = x.size(2), K = w.size(2);
  torch::Tensor out = torch::zeros({B, C, L}, torch::kFloat64);
  auto xa = x.accessor<double, 3>();
  auto wa = w.accessor<double, 3>();
  auto oa = out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < L; ++t) {
        double s = bias_in.defined() ? bias_in[c].item<double>() : 0.0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t src = t - (K - 1) + k;
          if (src >= 0) s += wa[c][0][k] * xa[b][c][src];
        }
        oa[b][c][t] = s;
      }
  return out;
}

// grad_x[s] = sum over the outputs t that read x[s]: w[k] g[t] scale[t], t = s + (K-1) - k < L.
torch::Tensor naive_conv_input_grad(const torch::Tensor& g_in, const torch::Tensor& scale_in,
                                    const torch::Tensor& w_in) {
  const torch::Tensor g = g_in.to(torch::kFloat64), w = w_in.to(torch::kFloat64);
  const torch::Tensor sc = scale_in.defined() ? scale_in.to(torch::kFloat64) : torch::ones_like(g);
  const int64_t B = g.size(0), C = g.size(1), L = g.size(2), K = w.size(2);
  torch::Tensor gx = torch::zeros({B, C, L}, torch::kFloat64);
  auto ga = g.accessor<double, 3>();
  auto sa = sc.accessor<double, 3>();
  auto wa = w.accessor<double, 3>();
  auto xa = gx.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < L; ++s)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = s + (K - 1) - k;
          if (t < L) xa[b][c][s] += wa[c][0][k] * ga[b][c][t] * sa[b][c][t];
        }
  return gx;
}

double tolerance(torch::ScalarType t) { return t == torch::kFloat64 ? 1e-12 : 2e-6; }

void require_close(const torch::Tensor& got, const torch::Tensor& want, double tol) {
  REQUIRE(got.sizes() == want.sizes());
  const torch::Tensor g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  const double err = (g - w).abs().max().item<double>();
  const double scale = std::max(1.0, w.abs().max().item<double>());
  INFO("max abs error " << err << " (scale " << scale << ")");
  REQUIRE(err <= tol * scale);
}

}  // namespace

TEST_CASE("causal_conv1d_silu equals the loop: strided input, widths, bias, float and double", "[kernels]") {
  for (auto dtype : {torch::kFloat32, torch::kFloat64})
    for (int64_t K : {1, 2, 4})
      for (int64_t L : {1, 3, 37})
        for (bool with_bias : {false, true}) {
          torch::manual_seed(7 + K + L);
          const auto o = torch::TensorOptions().dtype(dtype);
          // x as one half of a wider tensor, the way the mixers split in_proj's output.
          const torch::Tensor wide = torch::randn({2, 10, L}, o) * 2;
          const torch::Tensor x = wide.narrow(1, 5, 5);
          const torch::Tensor w = torch::randn({5, 1, K}, o);
          const torch::Tensor bias = with_bias ? torch::randn({5}, o) : torch::Tensor();
          const c10::optional<torch::Tensor> b = with_bias ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
          const torch::Tensor want = naive_causal_conv(x, w, bias);
          const mamba_lrp::ops::ConvSiluParts all = mamba_lrp::ops::_causal_conv1d_silu(x, w, b, mamba_lrp::ops::kConv | mamba_lrp::ops::kSilu | mamba_lrp::ops::kSigmoid);
          const double tol = tolerance(dtype);
          require_close(all.conv, want, tol);
          require_close(all.silu, want * torch::sigmoid(want), tol);
          require_close(all.sigmoid, torch::sigmoid(want), tol);
          // Only the SiLU (the convolution kept in a row buffer), or only the sigmoid.
          require_close(mamba_lrp::ops::_causal_conv1d_silu(x, w, b, mamba_lrp::ops::kSilu).silu, want * torch::sigmoid(want),
                        tol);
          require_close(mamba_lrp::ops::_causal_conv1d_silu(x, w, b, mamba_lrp::ops::kSigmoid).sigmoid, torch::sigmoid(want), tol);
        }
}

TEST_CASE("causal_conv1d_silu refuses a bias or weight that does not fit x (no read past them)", "[kernels]") {
  const torch::Tensor x = torch::randn({2, 5, 9});
  const torch::Tensor w = torch::randn({5, 1, 4});
  REQUIRE_THROWS(mamba_lrp::ops::_causal_conv1d_silu(x, w, torch::randn({3}), mamba_lrp::ops::kConv | mamba_lrp::ops::kSilu));
  REQUIRE_THROWS(mamba_lrp::ops::_causal_conv1d_silu(x, torch::randn({3, 1, 4}), c10::nullopt, mamba_lrp::ops::kConv));
  REQUIRE_THROWS(mamba_lrp::ops::_causal_conv1d_input_grad(x, torch::rand({2, 5, 4}), w));
}

TEST_CASE("the conv's SiLU is accurate over the whole float range", "[kernels]") {
  // Values from -200 to 200 (exp clamps there), a width-1 kernel of weight 1: c = x.
  const torch::Tensor x = torch::linspace(-200, 200, 40001, torch::kFloat32).reshape({1, 1, -1});
  const torch::Tensor w = torch::ones({1, 1, 1});
  const auto parts = mamba_lrp::ops::_causal_conv1d_silu(x, w, c10::nullopt, mamba_lrp::ops::kSilu | mamba_lrp::ops::kSigmoid);
  const torch::Tensor xd = x.to(torch::kFloat64);
  const torch::Tensor sig = torch::sigmoid(xd);
  // Relative to the float64 value; below x = -87 (exp clamped) both are under float's
  // smallest normal number 1.2e-38 (times |x| for the SiLU).
  REQUIRE(((parts.sigmoid.to(torch::kFloat64) - sig).abs() <= 1e-6 * sig + 1.2e-38).all().item<bool>());
  const torch::Tensor silu = xd * sig;
  const torch::Tensor err = (parts.silu.to(torch::kFloat64) - silu).abs() - 1e-6 * silu.abs() - 1.2e-38 * xd.abs();
  INFO("worst excess " << err.max().item<double>() << " at x = " << xd.flatten()[err.flatten().argmax()].item<double>());
  REQUIRE((err <= 0).all().item<bool>());
}

TEST_CASE("causal_conv1d_input_grad equals the loop and autograd of ATen's conv1d", "[kernels]") {
  for (auto dtype : {torch::kFloat32, torch::kFloat64})
    for (int64_t K : {1, 4})
      for (int64_t L : {2, 29}) {
        torch::manual_seed(11 + K + L);
        const auto o = torch::TensorOptions().dtype(dtype);
        const torch::Tensor g = torch::randn({3, 6, L}, o);
        const torch::Tensor scale = torch::rand({3, 6, L}, o);
        const torch::Tensor w = torch::randn({6, 1, K}, o);
        const double tol = tolerance(dtype);
        require_close(mamba_lrp::ops::_causal_conv1d_input_grad(g, scale, w), naive_conv_input_grad(g, scale, w), tol);
        require_close(mamba_lrp::ops::_causal_conv1d_input_grad(g, c10::nullopt, w),
                      naive_conv_input_grad(g, torch::Tensor(), w), tol);
        // The same through autograd of the padded ATen convolution.
        const torch::Tensor x = torch::randn({3, 6, L}, o).requires_grad_(true);
        const torch::Tensor y = torch::conv1d(torch::constant_pad_nd(x, {K - 1, 0}), w, torch::Tensor(), /*stride=*/{1},
                                                /*padding=*/at::IntArrayRef{0}, /*dilation=*/{1}, 6);
        const torch::Tensor gx = torch::autograd::grad({y}, {x}, {g * scale})[0];
        require_close(mamba_lrp::ops::_causal_conv1d_input_grad(g, scale, w), gx, tol);
        // Written over its own gradient argument: same values, same storage.
        const torch::Tensor own = g.clone();
        const torch::Tensor over = mamba_lrp::ops::_causal_conv1d_input_grad(own, c10::nullopt, w, /*overwrite_grad_out=*/true);
        REQUIRE(over.data_ptr() == own.data_ptr());
        require_close(over, naive_conv_input_grad(g, torch::Tensor(), w), tol);
      }
}

TEST_CASE("flip_add equals ATen's flip: into views, with and without the addend, scaled", "[kernels]") {
  for (auto dtype : {torch::kFloat32, torch::kFloat64})
    for (int64_t L : {1, 8, 197}) {
      torch::manual_seed(3 + L);
      const auto o = torch::TensorOptions().dtype(dtype);
      const torch::Tensor x = torch::randn({2, 4, L}, o), a = torch::randn({2, 4, L}, o);
      require_close(mamba_lrp::ops::_flip_add(x), x.flip({2}), 0);
      require_close(mamba_lrp::ops::_flip_add(x, a), a + x.flip({2}), 1e-15);
      require_close(mamba_lrp::ops::_flip_add(x, a, 0.5), (a + x.flip({2})) * 0.5, 1e-15);
      // into the second half of a wider tensor; the first half untouched
      const torch::Tensor wide = torch::zeros({2, 8, L}, o);
      mamba_lrp::ops::_flip_add_into(wide.narrow(1, 4, 4), x, a);
      require_close(wide.narrow(1, 4, 4), a + x.flip({2}), 1e-15);
      REQUIRE(wide.narrow(1, 0, 4).abs().sum().item<double>() == 0);
      // x itself a strided view (every other channel)
      const torch::Tensor xs = torch::randn({2, 8, L}, o).index({Slice(), Slice(0, 8, 2)});
      require_close(mamba_lrp::ops::_flip_add(xs, a), a + xs.flip({2}), 1e-15);
    }
  REQUIRE_THROWS_WITH(mamba_lrp::ops::_flip_add(torch::zeros({3, 4})), Catch::Contains("(B, C, L)"));
}
