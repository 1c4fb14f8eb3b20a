"""Independent Python references for the baseline explainers (issue 6), built on the
pure-PyTorch Mamba reference (hf_mamba_reference.py). Deliberately naive: explicit loops,
no shared code with the C++ implementation.

    grad_x_input(model, ids, e, target, position)            sum_H e * df/de at embeddings e
    integrated_gradients(model, ids, steps, rule, baseline=None, target=None, position=-1)
        Riemann sum over `steps` nodes (rule: left, right, middle, trapezoid) of the gradient on
        the straight path baseline -> embeddings; relevance (B, L) = sum_H (e - b) * mean grad.
    gauss_legendre_ig(...)        the same with numpy's Gauss-Legendre nodes mapped to [0, 1]
    traced_attention(model, ids, position=-1, target=None)
        per layer the hidden attention alpha (B, I, L, L) by an explicit triple loop over t, s
        and the product over k (channels and states vectorised); the forward then computes the
        scan as y = alpha u + D u through a leaf holding alpha's value, so autograd gives
        dF/dalpha (the total derivative: later layers see y through their delta, B, C too).
        Returns (alphas, grads, f).
    attention_rollout(alphas, position), mamba_attr(alphas, grads, position): by hand.
"""
import numpy as np
import torch
import torch.nn.functional as F

from hf_mamba_reference import causal_conv1d, linear, rms_norm, resolve_targets


def _f(model, e, position, target):
    logits = model.forward_embeddings(e, None, "standard")[:, position, :]
    t = resolve_targets(logits.detach(), target)
    return logits.gather(1, t[:, None])[:, 0], t


def grad_x_input(model, ids, e, target=None, position=-1):
    e = e.detach().requires_grad_(True)
    with torch.enable_grad():
        f, _ = _f(model, e, position, target)
        (g,) = torch.autograd.grad(f.sum(), e)
    return (e.detach() * g).sum(-1)


def _ig(model, ids, alphas, weights, baseline, target, position):
    e = model.embed(torch.as_tensor(ids))
    with torch.no_grad():
        _, t = _f(model, e, position, target)
    b = torch.zeros_like(e) if baseline is None else baseline.expand_as(e)
    total = torch.zeros_like(e)
    for a, w in zip(alphas, weights):          # one forward/backward per node: a plain loop
        x = (b + a * (e - b)).detach().requires_grad_(True)
        with torch.enable_grad():
            f, _ = _f(model, x, position, t)
            (g,) = torch.autograd.grad(f.sum(), x)
        total += w * g
    return ((e - b) * total).sum(-1)


def integrated_gradients(model, ids, steps, rule="trapezoid", baseline=None, target=None, position=-1):
    if rule == "left":
        alphas = [k / steps for k in range(steps)]
    elif rule == "right":
        alphas = [(k + 1) / steps for k in range(steps)]
    elif rule == "middle":
        alphas = [(k + 0.5) / steps for k in range(steps)]
    elif rule == "trapezoid":
        alphas = [k / (steps - 1) for k in range(steps)]
    else:
        raise ValueError(rule)
    if rule == "trapezoid":
        weights = [(0.5 if k in (0, steps - 1) else 1.0) / (steps - 1) for k in range(steps)]
    else:
        weights = [1.0 / steps] * steps
    return _ig(model, ids, alphas, weights, baseline, target, position)


def gauss_legendre_ig(model, ids, steps, baseline=None, target=None, position=-1):
    x, w = np.polynomial.legendre.leggauss(steps)
    return _ig(model, ids, [(v + 1) / 2 for v in x], [v / 2 for v in w], baseline, target, position)


def hidden_attention_loop(delta, A, Bm, Cm):
    """alpha (B, I, L, L) from delta (B, I, L), A (I, N), B and C (B, N, L), by loops."""
    Bsz, I, L = delta.shape
    rows = []
    for t in range(L):
        row = [torch.zeros(Bsz, I, dtype=delta.dtype)] * L
        for s in range(t + 1):
            decay = torch.ones(Bsz, I, A.shape[1], dtype=delta.dtype)
            for k in range(s + 1, t + 1):
                decay = decay * torch.exp(delta[:, :, k, None] * A[None])        # (B, I, N)
            term = Cm[:, None, :, t] * decay * (delta[:, :, s, None] * Bm[:, None, :, s])
            row[s] = term.sum(-1)
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


def traced_attention(model, ids, position=-1, target=None):
    cfg, sd = model.config, model.sd
    R, N = cfg["time_step_rank"], cfg["state_size"]
    h = model.embed(torch.as_tensor(ids))
    alphas = []
    with torch.enable_grad():
        for i in range(model.n_layers):
            m = f"backbone.layers.{i}.mixer."
            hn = rms_norm(h, sd[f"backbone.layers.{i}.norm.weight"], cfg["layer_norm_epsilon"], False)
            x, z = linear(hn, sd[m + "in_proj.weight"], sd.get(m + "in_proj.bias")).transpose(1, 2).chunk(2, dim=1)
            u = F.silu(causal_conv1d(x, sd[m + "conv1d.weight"], sd.get(m + "conv1d.bias")))   # (B, I, L)
            params = linear(u.transpose(1, 2), sd[m + "x_proj.weight"])
            dt, Bm, Cm = torch.split(params, [R, N, N], dim=-1)
            delta = F.softplus(linear(dt, sd[m + "dt_proj.weight"], sd[m + "dt_proj.bias"])).transpose(1, 2)
            A = -torch.exp(sd[m + "A_log"])
            alpha = hidden_attention_loop(delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2))
            # A leaf with alpha's value: its gradient is dF/dalpha with every path of the
            # later layers (which depend on y through delta, B, C) included.
            leaf = alpha.detach().requires_grad_(True)
            alphas.append(leaf)
            alpha = alpha + (leaf - leaf.detach())
            y = torch.einsum("bdts,bds->bdt", alpha, u) + sd[m + "D"][None, :, None] * u
            out = y * F.silu(z)
            h = h + linear(out.transpose(1, 2), sd[m + "out_proj.weight"], sd.get(m + "out_proj.bias"))
        h = rms_norm(h, sd["backbone.norm_f.weight"], cfg["layer_norm_epsilon"], False)
        logits = linear(h, model.head_w, model.head_b)[:, position, :]
        t = resolve_targets(logits.detach(), target)
        f = logits.gather(1, t[:, None])[:, 0]
        grads = torch.autograd.grad(f.sum(), alphas)
    return [a.detach() for a in alphas], list(grads), f.detach(), logits.detach()


def attention_rollout(alphas, position=-1):
    """Rollout of the channel-mean |alpha| with the identity for the residual, rows normalised."""
    L = alphas[0].shape[-1]
    joint = None
    for a in alphas:
        m = a.abs().mean(1) + torch.eye(L, dtype=a.dtype)
        m = m / m.sum(-1, keepdim=True)
        joint = m if joint is None else m @ joint
    return joint[:, position, :]


def mamba_attr(alphas, grads, position=-1):
    """Chefer et al.: R = I; R += mean_channels((grad * alpha)^+) R, layer by layer."""
    L = alphas[0].shape[-1]
    r = torch.eye(L, dtype=alphas[0].dtype).expand(alphas[0].shape[0], L, L)
    for a, g in zip(alphas, grads):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    return r[:, position, :]


def vim_traced_attention(model, pixel_values):
    """Vision Mamba (vim_reference.VimReference): the hidden attention alpha (B, I, T, T) of
    every branch (per layer: the forward scan, then the scan of the flipped sequence, in that
    scan's own order) by the triple loop, the forward run through leaves holding them as
    traced_attention does, and dF/dalpha for the argmax class logit F."""
    cfg, sd = model.config, model.sd
    R, N = cfg["dt_rank"], cfg["d_state"]
    with torch.no_grad():
        e = model.tokens(model.patch_embed(pixel_values.to(model.dtype), {}))
    alphas = []

    def branch(m, xz, s, a_name):
        x, z = xz.chunk(2, dim=1)
        u = F.silu(causal_conv1d(x, sd[m + f"conv1d{s}.weight"], sd.get(m + f"conv1d{s}.bias")))
        params = linear(u.transpose(1, 2), sd[m + f"x_proj{s}.weight"], sd.get(m + f"x_proj{s}.bias"))
        dt, Bm, Cm = torch.split(params, [R, N, N], dim=-1)
        delta = F.softplus(linear(dt, sd[m + f"dt_proj{s}.weight"], sd[m + f"dt_proj{s}.bias"])).transpose(1, 2)
        alpha = hidden_attention_loop(delta, -torch.exp(sd[m + a_name]), Bm.transpose(1, 2), Cm.transpose(1, 2))
        leaf = alpha.detach().requires_grad_(True)
        alphas.append(leaf)
        alpha = alpha + (leaf - leaf.detach())
        y = torch.einsum("bdts,bds->bdt", alpha, u) + sd[m + f"D{s}"][None, :, None] * u
        return y * F.silu(z)

    def norm(prefix, x):
        w, b = sd.get(prefix + ".weight"), sd.get(prefix + ".bias")
        if cfg["rms_norm"]:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["norm_epsilon"]) * w
        return F.layer_norm(x, x.shape[-1:], w, b, cfg["norm_epsilon"])

    with torch.enable_grad():
        residual, h = None, e
        for i in range(cfg["depth"]):
            residual = h if residual is None else residual + h
            m = f"layers.{i}.mixer."
            xz = linear(norm(f"layers.{i}.norm", residual), sd[m + "in_proj.weight"],
                        sd.get(m + "in_proj.bias")).transpose(1, 2)
            y = branch(m, xz, "", "A_log")
            if cfg["bimamba_type"] == "v2":
                y = y + branch(m, xz.flip([-1]), "_b", "A_b_log").flip([-1])
                if cfg["if_divide_out"]:
                    y = y / 2
            h = linear(y.transpose(1, 2), sd[m + "out_proj.weight"], sd.get(m + "out_proj.bias"))
        h = norm("norm_f", residual + h)
        logits = linear(h[:, model.cls_position], sd["head.weight"], sd.get("head.bias"))
        f = logits.gather(1, logits.detach().argmax(-1)[:, None])[:, 0]
        grads = torch.autograd.grad(f.sum(), alphas)
    return [a.detach() for a in alphas], list(grads), f.detach()


def vim_rollout(alphas, grads, cfg, row, method):
    """attnroll / mambaattr for Vim: per branch the channel mean of |alpha| (attnroll) or of
    (dF/dalpha * alpha)^+ (mambaattr); per layer the forward branch plus the backward branch
    flipped to sequence order, halved with if_divide_out; then the rollout; the row `row`."""
    per = 2 if cfg["bimamba_type"] == "v2" else 1
    reduced = [(g * a).clamp(min=0).mean(1) if method == "mambaattr" else a.abs().mean(1)
               for a, g in zip(alphas, grads)]
    T = alphas[0].shape[-1]
    eye = torch.eye(T, dtype=alphas[0].dtype)
    joint = eye.expand(alphas[0].shape[0], T, T)
    for l in range(0, len(reduced), per):
        m = reduced[l]
        if per == 2:
            m = m + reduced[l + 1].flip([-1, -2])
            if cfg["if_divide_out"]:
                m = m / 2
        if method == "mambaattr":
            joint = joint + m @ joint
        else:
            m = m + eye
            joint = (m / m.sum(-1, keepdim=True)) @ joint
    return joint[:, row, :]
