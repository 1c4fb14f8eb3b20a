#include "csrc/app/explain/methods.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "csrc/io/errors.h"
#include "csrc/app/explain/hidden_attention.h"
#include "csrc/app/explain/targets.h"

namespace mamba_lrp {

bool is_baseline_method(const std::string& method) {
  static const std::vector<std::string> names = {"smoothgrad", "ig", "attnroll", "mambaattr", "random"};
  return std::find(names.begin(), names.end(), method) != names.end();
}

std::pair<std::vector<double>, std::vector<double>> ig_nodes(const std::string& method, int64_t n) {
  if (n < 1) throw io::InputError("ig steps must be at least 1, got " + std::to_string(n));
  std::vector<double> x(n), w(n);
  if (method == "riemann_left" || method == "riemann_right" || method == "riemann_middle") {
    const double shift = method == "riemann_left" ? 0.0 : method == "riemann_right" ? 1.0 : 0.5;
    for (int64_t k = 0; k < n; ++k) {
      x[k] = (k + shift) / n;
      w[k] = 1.0 / n;
    }
  } else if (method == "riemann_trapezoid") {
    if (n < 2) throw io::InputError("ig steps must be at least 2 for riemann_trapezoid");
    for (int64_t k = 0; k < n; ++k) {
      x[k] = static_cast<double>(k) / (n - 1);
      w[k] = (k == 0 || k == n - 1 ? 0.5 : 1.0) / (n - 1);
    }
  } else if (method == "gausslegendre") {
    // Roots of the Legendre polynomial P_n by Newton's method from Chebyshev guesses,
    // weights 2 / ((1 - r^2) P_n'(r)^2); mapped from [-1, 1] to [0, 1].
    for (int64_t i = 0; i < n; ++i) {
      double r = std::cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 1;
      for (int it = 0; it < 100; ++it) {
        double p0 = 1, p1 = r;
        for (int64_t k = 2; k <= n; ++k) {
          const double p2 = ((2 * k - 1) * r * p1 - (k - 1) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        if (n == 1) p0 = 1;
        dp = n * (r * p1 - p0) / (r * r - 1);
        const double step = p1 / dp;
        r -= step;
        if (std::abs(step) < 1e-15) break;
      }
      x[n - 1 - i] = (r + 1) / 2;
      w[n - 1 - i] = 1.0 / ((1 - r * r) * dp * dp);  // (2 / (...)) / 2
    }
  } else {
    throw io::InputError("unknown ig method '" + method +
                     "' (expected gausslegendre, riemann_trapezoid, riemann_left, riemann_right or riemann_middle)");
  }
  return {x, w};
}

namespace {

// The target logits (N) at pos for embeds (N, L, H).
at::Tensor target_logit(MambaForCausalLM& m, const at::Tensor& e, const at::Tensor& mask_f, int64_t pos,
                        const at::Tensor& targets) {
  at::Tensor hidden = m->hidden_states(e, mask_f);                                   // (N, L, H)
  return m->head(hidden.select(1, pos)).gather(1, targets.unsqueeze(1)).squeeze(1);  // (N)
}

// Sum over samples i of weight_i * e_i * grad f(e_i) (or weight_i * grad f(e_i) when
// times_input is false), where sample i of `count` belongs to row rows[i]; `batch_size`
// samples per forward/backward. make(i0, n) returns the inputs of samples i0..i0+n-1;
// logit(e, rows) the target logits (n) of inputs e from those rows.
template <typename Make>
at::Tensor accumulate_grads(const LogitFn& logit, const at::Tensor& like, const at::Tensor& rows,
                            const at::Tensor& weights, int64_t count, int64_t batch_size, bool times_input, Make make) {
  at::Tensor acc = at::zeros_like(like);  // (B, L, H)
  for (int64_t i0 = 0; i0 < count; i0 += batch_size) {
    const int64_t n = std::min(batch_size, count - i0);
    const at::Tensor r = rows.narrow(0, i0, n);                             // (n)
    at::Tensor e = make(i0, n).detach().set_requires_grad(true);            // (n, L, H)
    torch::AutoGradMode grad_mode(true);
    const at::Tensor f = logit(e, r);                                       // (n)
    const at::Tensor g = torch::autograd::grad({f.sum()}, {e})[0];          // (n, L, H)
    torch::NoGradGuard ng;
    at::Tensor term = times_input ? g * e.detach() : g;
    acc.index_add_(0, r, term * weights.narrow(0, i0, n).view({n, 1, 1}));
  }
  return acc;
}

}  // namespace

uint64_t row_seed(uint64_t seed, int64_t row) {
  // SplitMix64's finaliser (Steele, Lea, Flood 2014) over seed and row, one after the other.
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(seed) ^ static_cast<uint64_t>(row));
}

at::Tensor random_relevance(int64_t batch, int64_t length, at::ScalarType dtype, uint64_t seed, int64_t first_row) {
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < batch; ++b) {
    auto gen = at::detail::createCPUGenerator(row_seed(seed, first_row + b));
    rows.push_back(at::rand({1, length}, gen, at::TensorOptions().dtype(dtype)));
  }
  return batch == 0 ? at::empty({0, length}, at::TensorOptions().dtype(dtype)) : at::cat(rows);
}

at::Tensor smoothgrad_relevance(const at::Tensor& embeds, const LogitFn& logit, const ExplainOptions& o) {
  if (o.samples < 1) throw io::InputError("smoothgrad samples must be at least 1, got " + std::to_string(o.samples));
  if (!(o.noise >= 0)) throw io::InputError("smoothgrad noise must be non-negative");
  if (o.batch_size < 1) throw io::InputError("batch size must be at least 1, got " + std::to_string(o.batch_size));
  const int64_t batch = embeds.size(0), L = embeds.size(1), H = embeds.size(2);
  // Noise standard deviation per row: noise * (max - min) of that row's embedding values.
  const at::Tensor flat = embeds.reshape({batch, L * H});
  const at::Tensor sigma = (std::get<0>(flat.max(1)) - std::get<0>(flat.min(1))) * o.noise;  // (B)
  const int64_t S = o.samples, count = batch * S;
  // The S noise samples of row b, from that row's own generator (rows are repeated S times below).
  std::vector<at::Tensor> noise;
  for (int64_t b = 0; b < batch; ++b) {
    auto gen = at::detail::createCPUGenerator(row_seed(o.seed, o.first_row + b));
    noise.push_back(at::randn({S, L, H}, gen, at::TensorOptions().dtype(embeds.scalar_type())));
  }
  const at::Tensor eps = (batch == 0 ? at::empty({0, L, H}, at::TensorOptions().dtype(embeds.scalar_type()))
                                     : at::cat(noise)).to(embeds.device());
  const at::Tensor rows =
      at::arange(batch, at::TensorOptions().dtype(at::kLong).device(embeds.device())).repeat_interleave(S);
  const at::Tensor w = at::full({count}, 1.0 / S, embeds.options());
  const at::Tensor acc = accumulate_grads(logit, embeds, rows, w, count, o.batch_size, true, [&](int64_t i0, int64_t n) {
    const at::Tensor r = rows.narrow(0, i0, n);
    return embeds.index_select(0, r) + eps.narrow(0, i0, n) * sigma.index_select(0, r).view({n, 1, 1});
  });
  return acc.sum(-1);  // (B, L)
}

at::Tensor ig_relevance(const at::Tensor& embeds, const at::Tensor& base, const LogitFn& logit, const ExplainOptions& o) {
  if (o.batch_size < 1) throw io::InputError("batch size must be at least 1, got " + std::to_string(o.batch_size));
  const int64_t batch = embeds.size(0);
  const auto nodes = ig_nodes(o.ig_method, o.ig_steps);
  const int64_t S = o.ig_steps, count = batch * S;
  const at::Tensor alphas = at::tensor(nodes.first, at::kDouble).to(embeds.options()).repeat({batch});  // (count)
  const at::Tensor w = at::tensor(nodes.second, at::kDouble).to(embeds.options()).repeat({batch});      // (count)
  const at::Tensor rows =
      at::arange(batch, at::TensorOptions().dtype(at::kLong).device(embeds.device())).repeat_interleave(S);
  const at::Tensor diff = embeds - base;                                                                   // (B, L, H)
  const at::Tensor acc = accumulate_grads(logit, embeds, rows, w, count, o.batch_size, false, [&](int64_t i0, int64_t n) {
    const at::Tensor r = rows.narrow(0, i0, n);
    return base.index_select(0, r) + alphas.narrow(0, i0, n).view({n, 1, 1}) * diff.index_select(0, r);
  });
  return (acc * diff).sum(-1);  // (B, L)
}

namespace {

// attnroll / mambaattr on one chunk of rows: the traced standard forward from `inputs`
// (embeddings or tokens) to the target logits, and the channel-reduced hidden attention of
// every SSM branch (MambaAttr: weighted by the gradient of the summed logits into each
// branch's scan output).
using TracedLogits = std::function<at::Tensor(const at::Tensor&, std::vector<SsmTrace>*)>;
std::vector<at::Tensor> branch_attentions(const std::string& method, const at::Tensor& inputs,
                                          const TracedLogits& traced_logits) {
  const bool grad_weighted = method == "mambaattr";
  std::vector<SsmTrace> traces;
  torch::AutoGradMode grad_mode(grad_weighted);
  // The inputs require grad so that every scan output is in the graph (MambaAttr).
  const at::Tensor x = inputs.detach().clone().set_requires_grad(grad_weighted);
  const at::Tensor f = traced_logits(x, &traces);  // (n)
  std::vector<at::Tensor> grads;
  if (grad_weighted) {
    std::vector<at::Tensor> ys;
    for (const auto& t : traces) ys.push_back(t.y);
    grads = torch::autograd::grad({f.sum()}, ys);
  }
  torch::NoGradGuard ng;
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < traces.size(); ++i)
    out.push_back(grad_weighted ? reduced_hidden_attention(traces[i], ChannelReduce::kMeanGradPositive, grads[i])
                                : reduced_hidden_attention(traces[i], ChannelReduce::kMeanAbs));
  return out;
}

at::Tensor rollout_of(const std::string& method, const std::vector<at::Tensor>& layers) {
  return method == "mambaattr" ? gradient_rollout(layers) : attention_rollout(layers);  // (n, L, L)
}

}  // namespace

Explanation explain_baseline(MambaForCausalLM& model, const at::Tensor& ids, const at::Tensor& mask, int64_t pos,
                             const ExplainOptions& o) {
  const int64_t batch = ids.size(0), L = ids.size(1);
  if (o.batch_size < 1) throw io::InputError("batch size must be at least 1, got " + std::to_string(o.batch_size));
  at::Tensor embeds;
  {
    torch::NoGradGuard g;
    embeds = model->embed(ids);  // (B, L, H)
  }
  const int64_t H = embeds.size(2);
  const auto opt = embeds.options();
  const at::Tensor mask_f = mask.defined() ? mask.to(embeds.scalar_type()) : at::Tensor();
  const auto long_opt = at::TensorOptions().dtype(at::kLong).device(embeds.device());

  Explanation e;
  // The clean forward: targets and f.
  at::Tensor targets, f;
  {
    torch::NoGradGuard g;
    const at::Tensor at_pos = model->head(model->hidden_states(embeds, mask_f).select(1, pos));  // (B, V)
    targets = pick_targets(at_pos, o.targets);
    f = at_pos.gather(1, targets.unsqueeze(1)).squeeze(1);
  }
  at::Tensor rel;  // (B, L)
  const LogitFn logit = [&](const at::Tensor& x, const at::Tensor& r) {
    const at::Tensor mk = mask_f.defined() ? mask_f.index_select(0, r) : at::Tensor();
    return target_logit(model, x, mk, pos, targets.index_select(0, r));
  };
  if (o.method == "random") {
    rel = random_relevance(batch, L, embeds.scalar_type(), o.seed, o.first_row).to(embeds.device());
  } else if (o.method == "smoothgrad") {
    rel = smoothgrad_relevance(embeds, logit, o);
  } else if (o.method == "ig") {
    at::Tensor base;
    if (o.ig_baseline_token >= 0) {
      if (o.ig_baseline_token >= model->config().vocab_size())
        throw io::InputError("ig baseline token " + std::to_string(o.ig_baseline_token) + " is outside the vocabulary");
      torch::NoGradGuard g;
      base = model->embed(at::full({1, 1}, o.ig_baseline_token, long_opt)).expand({batch, L, H});
    } else if (!o.ig_baseline.defined()) {
      base = at::zeros_like(embeds);
    } else {
      base = o.ig_baseline.to(opt);
      if (base.dim() == 1 && base.size(0) == H) base = base.view({1, 1, H}).expand({batch, L, H});
      else if (base.sizes() != embeds.sizes())
        throw io::InputError("ig baseline must have shape (hidden) or (batch, length, hidden)");
    }
    rel = ig_relevance(embeds, base, logit, o);
  } else if (o.method == "attnroll" || o.method == "mambaattr") {
    std::vector<at::Tensor> rows_out;
    for (int64_t b0 = 0; b0 < batch; b0 += o.batch_size) {
      const int64_t n = std::min(o.batch_size, batch - b0);
      const at::Tensor mk = mask_f.defined() ? mask_f.narrow(0, b0, n) : at::Tensor();
      const at::Tensor tn = targets.narrow(0, b0, n);
      const std::vector<at::Tensor> layers = branch_attentions(o.method, embeds.narrow(0, b0, n), [&](const at::Tensor& en, std::vector<SsmTrace>* tr) {
        return traced_lm_forward(model, en, mk, pos, tr).gather(1, tn.unsqueeze(1)).squeeze(1);
      });
      rows_out.push_back(rollout_of(o.method, layers).select(1, pos));  // (n, L)
    }
    rel = at::cat(rows_out, 0);
  } else {
    throw io::InputError("unknown baseline method '" + o.method + "'");
  }
  torch::NoGradGuard g;
  e.relevance = rel.to(embeds.scalar_type());
  if (mask.defined()) e.relevance = e.relevance * mask.to(e.relevance.scalar_type());
  e.logits = f;
  e.targets = targets;
  e.positions = at::full({batch}, pos, long_opt);
  return e;
}

bool is_vim_baseline_method(const std::string& method) { return is_baseline_method(method); }

VimExplanation explain_vim_baseline(VisionMamba& model, const at::Tensor& pixel_values,
                                    const std::vector<int64_t>& given_targets, const ExplainOptions& o) {
  if (!is_vim_baseline_method(o.method))
    throw io::InputError("method '" + o.method + "' is not available for Vision Mamba models");
  const VimConfig& cfg = model->config();
  if (!model->head) throw io::InputError("the model has no classification head (num_classes is 0): nothing to explain");
  const at::Tensor& weight = model->patch_embed->proj->weight;  // its dtype and device are the model's
  const at::ScalarType dtype = weight.scalar_type();
  const at::Tensor x = check_pixel_values(cfg, pixel_values, dtype).to(weight.device());  // (B, C, H, W)
  const int64_t batch = x.size(0);
  check_targets(given_targets, batch, cfg.num_classes());
  if (o.ig_baseline_token >= 0) throw io::InputError("a token id as the IG baseline is for Mamba language models");
  // True gradients: the standard propagation, no composite (restored afterwards).
  struct Restore {
    VisionMamba& m;
    rules::Propagation p;
    rules::Composite c;
    ~Restore() {
      m->set_propagation(p);
      m->set_composite(c);
    }
  } restore{model, model->propagation(), model->composite()};
  model->set_propagation(rules::Propagation::kStandard);
  model->set_composite(rules::Composite());

  at::Tensor e, logits;
  {
    torch::NoGradGuard g;
    e = model->tokens(x);               // (B, T, D)
    logits = model->forward_tokens(e);  // (B, classes)
  }
  const at::Tensor targets = pick_targets(logits, given_targets);
  const LogitFn logit = [&](const at::Tensor& t, const at::Tensor& r) {
    return model->forward_tokens(t).gather(1, targets.index_select(0, r).unsqueeze(1)).squeeze(1);
  };
  const int64_t T = e.size(1), D = e.size(2);
  at::Tensor rel;
  if (o.method == "random") {
    rel = random_relevance(batch, T, dtype, o.seed, o.first_row).to(e.device());
  } else if (o.method == "smoothgrad") {
    rel = smoothgrad_relevance(e, logit, o);
  } else if (o.method == "attnroll" || o.method == "mambaattr") {
    std::vector<at::Tensor> rows_out;
    for (int64_t b0 = 0; b0 < batch; b0 += o.batch_size) {
      const int64_t n = std::min(o.batch_size, batch - b0);
      const at::Tensor tn = targets.narrow(0, b0, n);
      const std::vector<at::Tensor> branches = branch_attentions(o.method, e.narrow(0, b0, n), [&](const at::Tensor& en, std::vector<SsmTrace>* tr) {
        return traced_vim_forward(model, en, tr).gather(1, tn.unsqueeze(1)).squeeze(1);
      });
      rows_out.push_back(vim_readout_row(cfg, rollout_of(o.method, vim_layer_attention(cfg, branches))));  // (n, T)
    }
    rel = at::cat(rows_out, 0);
  } else {
    at::Tensor base = o.ig_baseline.defined() ? o.ig_baseline.to(e.options()) : at::zeros_like(e);
    if (base.dim() == 1 && base.size(0) == D) base = base.view({1, 1, D}).expand_as(e);
    if (base.sizes() != e.sizes()) throw io::InputError("ig baseline must have shape (embed_dim) or (batch, tokens, embed_dim)");
    rel = ig_relevance(e, base, logit, o);
  }
  torch::NoGradGuard g;
  VimExplanation out;
  out.token_relevance = rel;  // (B, T)
  out.cls_position = cfg.cls_position();
  at::Tensor patches = rel;
  if (out.cls_position >= 0)
    patches = at::cat({rel.narrow(1, 0, out.cls_position), rel.narrow(1, out.cls_position + 1, T - out.cls_position - 1)}, 1);
  out.patch_relevance = patches.reshape({batch, cfg.grid(), cfg.grid()});
  out.constant_relevance = at::zeros({batch}, e.options());
  out.logits = logits.gather(1, targets.unsqueeze(1)).squeeze(1);
  out.class_logits = logits;
  out.targets = targets;
  return out;
}

}  // namespace mamba_lrp
