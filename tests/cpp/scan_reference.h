// The C++ tests' one selective-scan input generator (random_case) and one reference
// (reference_scan): a scalar float64 loop written from the equations, independent of the
// kernels, giving the forward (out, the pre-gate y, the last state) and the MambaLRP
// gradients (du, dz) of an output gradient. Python has the same pair in
// tests/python/scan_reference.py.
//
//   dt_t = softplus(delta_t + bias)  (or delta_t + bias)
//   h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t;   y_t = C_t . h_t + D u_t;   out_t = y_t silu(z_t)
// MambaLRP (exp(dt A), dt B and C constants; the gate gives half to each factor; the SiLU
// of z its identity rule):
//   gy_t = g_t silu(z_t) / 2;   dz_t = g_t y_t sigmoid(z_t) / 2   (without z: gy_t = g_t)
//   lambda_t = exp(dt_{t+1} A) lambda_{t+1} + gy_t C_t;   du_t = dt_t B_t . lambda_t + D gy_t
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace scan_test {

using OptTensor = c10::optional<at::Tensor>;

// An optional argument from a tensor that may be undefined (no z, no D).
inline OptTensor opt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : c10::nullopt; }

struct ScanCase {
  // u, delta, z, gout (batch, dim, seqlen); A (dim, dstate); B, C (batch, dstate, seqlen) or
  // (batch, groups, dstate, seqlen); D, bias (dim). z undefined when the case has none.
  // gout: a random gradient of out, for the backward.
  at::Tensor u, delta, A, B, C, D, z, bias, gout;

  // Every tensor converted (dtype and/or device).
  ScanCase to(const at::TensorOptions& o) const {
    auto conv = [&](const at::Tensor& t) { return t.defined() ? t.to(o) : t; };
    return {conv(u), conv(delta), conv(A), conv(B), conv(C), conv(D), conv(z), conv(bias), conv(gout)};
  }
};

struct ScanOptions {
  at::ScalarType dtype_ = at::kDouble;
  int64_t groups_ = 0;       // 0: B, C (batch, dstate, seqlen); g > 0: (batch, g, dstate, seqlen)
  bool with_z_ = true;       // the gate input z
  bool decay_only_ = true;   // A < 0 as in every Mamba model; false: small A of both signs
  bool mamba_init_ = false;  // A and dt as a Mamba layer is initialised (see random_case)
  uint64_t seed_ = 0;

  ScanOptions& dtype(at::ScalarType v) { dtype_ = v; return *this; }
  ScanOptions& groups(int64_t v) { groups_ = v; return *this; }
  ScanOptions& with_z(bool v) { with_z_ = v; return *this; }
  ScanOptions& decay_only(bool v) { decay_only_ = v; return *this; }
  ScanOptions& mamba_init(bool v) { mamba_init_ = v; return *this; }
  ScanOptions& seed(uint64_t v) { seed_ = v; return *this; }
};

// Random inputs in Mamba's ranges, drawn in float64 and then rounded to the dtype (so cases
// that differ only in dtype hold the same values to rounding; z is drawn even when left
// out, so with and without z share the rest).
//   default: A = -exp(0.5 N(0,1)) (around -1), dt = softplus(0.5 N(0,1) - 1 + 0.3 N(0,1))
//            (around 0.3); or, decay_only false, A = 0.02 N(0,1), exponents of both signs.
//   mamba_init: A[d, n] = -(n + 1) (Mamba's A_log = log(1..dstate)) and dt_bias =
//            softplus^-1(dt0), dt0 log-uniform in [1e-3, 1e-1] (Mamba's dt_proj.bias),
//            delta = 0.5 N(0,1): decays exp(dt A) from about 2e-4 to 0.9998, so some
//            channels remember the whole sequence.
// u, B, C, D, z, gout: N(0,1).
inline ScanCase random_case(int64_t batch, int64_t dim, int64_t seqlen, int64_t dstate,
                            const ScanOptions& opt = ScanOptions()) {
  at::manual_seed(opt.seed_);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  const std::vector<int64_t> bc = opt.groups_ > 0 ? std::vector<int64_t>{batch, opt.groups_, dstate, seqlen}
                                                  : std::vector<int64_t>{batch, dstate, seqlen};
  ScanCase c;
  c.u = at::randn({batch, dim, seqlen}, o);                                                 // (B, D, L)
  c.delta = at::randn({batch, dim, seqlen}, o) * 0.5 - (opt.mamba_init_ ? 0.0 : 1.0);       // (B, D, L)
  if (opt.mamba_init_)
    c.A = -at::arange(1, dstate + 1, o).repeat({dim, 1});                                   // (D, N)
  else
    c.A = opt.decay_only_ ? -at::exp(at::randn({dim, dstate}, o) * 0.5) : at::randn({dim, dstate}, o) * 0.02;
  c.B = at::randn(bc, o);                                                                   // (B, [G,] N, L)
  c.C = at::randn(bc, o);                                                                   // (B, [G,] N, L)
  c.D = at::randn({dim}, o);                                                                // (D)
  c.z = at::randn({batch, dim, seqlen}, o);                                                 // (B, D, L)
  if (opt.mamba_init_) {
    const at::Tensor dt0 = at::exp(at::rand({dim}, o) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3));
    c.bias = at::log(at::expm1(dt0));                                                       // (D)
  } else {
    c.bias = at::randn({dim}, o) * 0.3;                                                     // (D)
  }
  c.gout = at::randn({batch, dim, seqlen}, o);                                              // (B, D, L)
  if (!opt.with_z_) c.z = at::Tensor();
  return c.to(at::TensorOptions().dtype(opt.dtype_));
}

struct ScanReference {
  at::Tensor out, y, last_state;  // (batch, dim, seqlen) x 2, (batch, dim, dstate); float64
  at::Tensor du, dz;              // MambaLRP gradients for c.gout; dz undefined without z
};

// The scan of c (in float64, from c's values as they are, so a float32 case is compared on
// its own rounded inputs). D, z, bias may be undefined; du, dz are computed when c.gout is
// defined.
inline ScanReference reference_scan(const ScanCase& c_in, bool delta_softplus = true) {
  const ScanCase c = c_in.to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  const int64_t batch = c.u.size(0), dim = c.u.size(1), len = c.u.size(2), N = c.A.size(1);
  const at::Tensor B4 = c.B.dim() == 3 ? c.B.unsqueeze(1) : c.B;  // (B, G, N, L)
  const at::Tensor C4 = c.C.dim() == 3 ? c.C.unsqueeze(1) : c.C;
  const int64_t dims_per_group = dim / B4.size(1);
  const bool with_z = c.z.defined(), with_grad = c.gout.defined();
  const auto o = c.u.options();
  // Absent D, bias: zeros; absent z or gout: zeros read through, results left undefined.
  auto or_zeros = [&](const at::Tensor& t, at::IntArrayRef shape) { return t.defined() ? t : at::zeros(shape, o); };
  const at::Tensor D_t = or_zeros(c.D, {dim}), bias_t = or_zeros(c.bias, {dim});
  const at::Tensor z_t = or_zeros(c.z, {batch, dim, len}), g_t = or_zeros(c.gout, {batch, dim, len});
  ScanReference r;
  r.out = at::zeros({batch, dim, len}, o);
  r.y = at::zeros({batch, dim, len}, o);
  r.last_state = at::zeros({batch, dim, N}, o);
  at::Tensor du_t = at::zeros({batch, dim, len}, o), dz_t = at::zeros({batch, dim, len}, o);
  auto u = c.u.accessor<double, 3>(), delta = c.delta.accessor<double, 3>(), z = z_t.accessor<double, 3>();
  auto gout = g_t.accessor<double, 3>();
  auto A = c.A.accessor<double, 2>();
  auto Bm = B4.accessor<double, 4>(), Cm = C4.accessor<double, 4>();
  auto D = D_t.accessor<double, 1>(), bias = bias_t.accessor<double, 1>();
  auto out = r.out.accessor<double, 3>(), y = r.y.accessor<double, 3>(), last = r.last_state.accessor<double, 3>();
  auto du = du_t.accessor<double, 3>(), dz = dz_t.accessor<double, 3>();
  std::vector<double> dt(len), gy(len);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t g = d / dims_per_group;
      for (int64_t t = 0; t < len; ++t) {
        const double x = delta[b][d][t] + bias[d];
        dt[t] = delta_softplus ? (x > 20 ? x : std::log1p(std::exp(x))) : x;
      }
      // Forward, one state at a time.
      for (int64_t n = 0; n < N; ++n) {
        double h = 0;
        for (int64_t t = 0; t < len; ++t) {
          h = std::exp(dt[t] * A[d][n]) * h + dt[t] * u[b][d][t] * Bm[b][g][n][t];
          y[b][d][t] += Cm[b][g][n][t] * h;
        }
        last[b][d][n] = h;
      }
      for (int64_t t = 0; t < len; ++t) {
        y[b][d][t] += D[d] * u[b][d][t];
        const double sig = 1.0 / (1.0 + std::exp(-z[b][d][t]));
        out[b][d][t] = with_z ? y[b][d][t] * z[b][d][t] * sig : y[b][d][t];
        // MambaLRP: the gate first.
        gy[t] = with_z ? gout[b][d][t] * z[b][d][t] * sig / 2 : gout[b][d][t];
        dz[b][d][t] = gout[b][d][t] * y[b][d][t] * sig / 2;
        du[b][d][t] = D[d] * gy[t];
      }
      if (!with_grad) continue;
      // Then the reverse scan, one state at a time.
      for (int64_t n = 0; n < N; ++n) {
        double lambda = 0;
        for (int64_t t = len - 1; t >= 0; --t) {
          lambda = (t + 1 < len ? std::exp(dt[t + 1] * A[d][n]) * lambda : 0.0) + gy[t] * Cm[b][g][n][t];
          du[b][d][t] += dt[t] * Bm[b][g][n][t] * lambda;
        }
      }
    }
  if (with_grad) {
    r.du = du_t;
    if (with_z) r.dz = dz_t;
  }
  return r;
}

// max |ours - ref| / max |ref|: a relative error that does not blow up where ref crosses
// zero.
inline double rel_err(const at::Tensor& ours, const at::Tensor& ref) {
  const at::Tensor a = ours.detach().to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  const at::Tensor b = ref.detach().to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  const double scale = b.abs().max().item<double>();
  return (a - b).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
}

}  // namespace scan_test
