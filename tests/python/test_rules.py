"""LRP rule ops: unchanged forward, the rule's backward (against references written here
with the detach trick), and conservation in float64."""
import pytest
import torch
import torch.nn.functional as F

DT = torch.float64


def rand(*shape, seed=0, dtype=DT):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def grads_of(fn, inputs, g):
    for x in inputs:
        x.grad = None
        x.requires_grad_(True)
    out = fn(*inputs)
    out.backward(g)
    return out.detach(), [x.grad.clone() for x in inputs]


# ---- SiLU identity ------------------------------------------------------------------------

def test_silu_identity(ops):
    x, g = rand(4, 7, seed=1), rand(4, 7, seed=2)
    out, (gx,) = grads_of(ops.silu_identity, [x], g)
    torch.testing.assert_close(out, F.silu(x.detach()), rtol=0, atol=0)
    torch.testing.assert_close(gx, g * torch.sigmoid(x.detach()), rtol=1e-15, atol=1e-15)
    # relevance passes unchanged: x * grad = silu(x) * g elementwise
    torch.testing.assert_close(x.detach() * gx, out * g, rtol=1e-12, atol=1e-14)


# ---- gate half ----------------------------------------------------------------------------

def test_gate_half(ops):
    a, b, g = rand(3, 5, seed=1), rand(3, 5, seed=2), rand(3, 5, seed=3)
    out, (ga, gb) = grads_of(ops.gate_half, [a, b], g)
    torch.testing.assert_close(out, a.detach() * b.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ga, 0.5 * g * b.detach(), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(gb, 0.5 * g * a.detach(), rtol=1e-15, atol=1e-15)
    r_out = (out * g).sum()
    torch.testing.assert_close((a.detach() * ga).sum(), 0.5 * r_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((a.detach() * ga + b.detach() * gb).sum(), r_out, rtol=1e-12, atol=1e-12)


def test_gate_half_broadcast(ops):
    a, b, g = rand(3, 5, seed=1), rand(1, 5, seed=2), rand(3, 5, seed=3)
    _, (ga, gb) = grads_of(ops.gate_half, [a, b], g)
    assert gb.shape == (1, 5)
    torch.testing.assert_close(gb, (0.5 * g * a.detach()).sum(0, keepdim=True), rtol=1e-14, atol=1e-14)


# ---- norms ----------------------------------------------------------------------------------

def test_rms_norm_identity(ops):
    x, w, g = rand(2, 6, 8, seed=1), rand(8, seed=2), rand(2, 6, 8, seed=3)
    eps = 1e-5
    out, (gx,) = grads_of(lambda x: ops.rms_norm_identity(x, w, eps), [x], g)
    xd = x.detach()
    plain = xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps) * w
    torch.testing.assert_close(out, plain, rtol=1e-14, atol=1e-14)
    xr = xd.clone().requires_grad_(True)
    (xr * torch.rsqrt(xr.pow(2).mean(-1, keepdim=True) + eps).detach() * w).backward(g)
    torch.testing.assert_close(gx, xr.grad, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close((xd * gx).sum(), (out * g).sum(), rtol=1e-12, atol=1e-12)
    # without weight
    out2 = ops.rms_norm_identity(xd, None, eps)
    torch.testing.assert_close(out2, xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps), rtol=1e-14, atol=1e-14)


def test_layer_norm_identity(ops):
    x, w, b, g = rand(2, 6, 8, seed=1), rand(8, seed=2), rand(8, seed=4), rand(2, 6, 8, seed=3)
    eps = 1e-6
    out, (gx,) = grads_of(lambda x: ops.layer_norm_identity(x, w, b, eps), [x], g)
    xd = x.detach()
    torch.testing.assert_close(out, F.layer_norm(xd, (8,), w, b, eps), rtol=1e-13, atol=1e-13)
    xr = xd.clone().requires_grad_(True)
    mean = xr.mean(-1, keepdim=True)
    rstd = torch.rsqrt(xr.var(-1, unbiased=False, keepdim=True) + eps).detach()
    ((xr - mean) * rstd * w + b).backward(g)
    torch.testing.assert_close(gx, xr.grad, rtol=1e-13, atol=1e-13)
    # conservation with zero bias
    out0, (gx0,) = grads_of(lambda x: ops.layer_norm_identity(x, w, torch.zeros_like(b), eps), [xd.clone()], g)
    torch.testing.assert_close((xd * gx0).sum(), (out0 * g).sum(), rtol=1e-12, atol=1e-12)


# ---- gamma rules ------------------------------------------------------------------------------

def gamma_reference(f, x, w, b, gamma):
    """The generalized gamma rule as a detach trick: zp * (z / zp).detach()."""
    z = f(x, w, b)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    wa, wb = w + gamma * w.clamp(min=0), w + gamma * w.clamp(max=0)
    ba = None if b is None else b + gamma * b.clamp(min=0)
    bb = None if b is None else b + gamma * b.clamp(max=0)
    zpos = f(xp, wa, ba) + f(xn, wb, None)
    zneg = f(xp, wb, bb) + f(xn, wa, None)
    zp = torch.where(z > 0, zpos, zneg)
    return zp * (z / zp).detach()


LAYERS = {
    "linear": (lambda ops: ops.linear_gamma, lambda x, w, b, gamma, op: op(x, w, b, gamma),
               F.linear, lambda: (rand(4, 3, 10, seed=1), rand(6, 10, seed=2), rand(6, seed=3))),
    # depthwise causal conv as in the Mamba mixer: groups = channels, padding = kernel - 1
    "conv1d": (lambda ops: ops.conv1d_gamma,
               lambda x, w, b, gamma, op: op(x, w, b, [1], [3], [1], 6, gamma),
               lambda x, w, b: F.conv1d(x, w, b, 1, 3, 1, 6),
               lambda: (rand(2, 6, 9, seed=1), rand(6, 1, 4, seed=2), rand(6, seed=3))),
    "conv1d_dense": (lambda ops: ops.conv1d_gamma,
                     lambda x, w, b, gamma, op: op(x, w, b, [2], [1], [1], 1, gamma),
                     lambda x, w, b: F.conv1d(x, w, b, 2, 1, 1, 1),
                     lambda: (rand(2, 4, 11, seed=1), rand(5, 4, 3, seed=2), rand(5, seed=3))),
    # ViT / Vim patch embedding: kernel = stride = patch
    "conv2d": (lambda ops: ops.conv2d_gamma,
               lambda x, w, b, gamma, op: op(x, w, b, [4, 4], [0, 0], [1, 1], 1, gamma),
               lambda x, w, b: F.conv2d(x, w, b, 4),
               lambda: (rand(2, 3, 8, 12, seed=1), rand(5, 3, 4, 4, seed=2), rand(5, seed=3))),
}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("gamma", [0.0, 0.25, 1.0])
def test_gamma_rule(ops, layer, gamma):
    get_op, call, f, make = LAYERS[layer]
    op = get_op(ops)
    x, w, b = make()
    out = call(x, w, b, gamma, op)
    torch.testing.assert_close(out, f(x, w, b), rtol=1e-14, atol=1e-14)  # forward unchanged
    g = rand(*out.shape, seed=9)

    _, (gx,) = grads_of(lambda x: call(x, w, b, gamma, op), [x.clone()], g)
    _, (gx_ref,) = grads_of(lambda x: gamma_reference(f, x, w, b, gamma), [x.clone()], g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-11, atol=1e-11)
    if gamma == 0.0:  # gamma = 0 is the plain gradient
        _, (gx_plain,) = grads_of(lambda x: f(x, w, b), [x.clone()], g)
        torch.testing.assert_close(gx, gx_plain, rtol=1e-11, atol=1e-11)

    # conservation with zero bias: sum x * grad = sum out * g
    zb = torch.zeros_like(b)
    out0, (gx0,) = grads_of(lambda x: call(x, w, zb, gamma, op), [x.clone()], g)
    torch.testing.assert_close((x * gx0).sum(), (out0 * g).sum(), rtol=1e-12, atol=1e-12)


def test_gamma_rule_weights_get_no_gradient(ops):
    x, w, b = rand(3, 4, seed=1), rand(5, 4, seed=2).requires_grad_(True), rand(5, seed=3).requires_grad_(True)
    x.requires_grad_(True)
    ops.linear_gamma(x, w, b, 0.25).sum().backward()
    assert x.grad is not None and w.grad is None and b.grad is None


# ---- bad arguments name the argument ----------------------------------------------------------

@pytest.mark.parametrize("call,words", [
    (lambda ops: ops.linear_gamma(rand(3, 4), rand(5, 3), None, 0.25), ["x", "in_features"]),
    (lambda ops: ops.linear_gamma(rand(3, 4), rand(5, 4), rand(4), 0.25), ["bias", "(5)"]),
    (lambda ops: ops.linear_gamma(rand(3, 4), rand(5, 4), None, -1.0), ["gamma", ">= 0"]),
    (lambda ops: ops.linear_gamma(rand(3, 4), rand(5, 4, dtype=torch.float32), None, 0.25), ["weight", "dtype"]),
    (lambda ops: ops.conv1d_gamma(rand(3, 4), rand(4, 1, 3), None, [1], [2], [1], 4, 0.25), ["x", "length"]),
    (lambda ops: ops.conv1d_gamma(rand(2, 4, 9), rand(4, 1, 3), None, [1], [2], [1], 3, 0.25), ["groups"]),
    (lambda ops: ops.conv2d_gamma(rand(2, 3, 8, 8), rand(4, 3, 2), None, [2, 2], [0, 0], [1, 1], 1, 0.25),
     ["weight", "kH, kW"]),
    (lambda ops: ops.rms_norm_identity(rand(2, 4), rand(5), 1e-5), ["weight", "(4)"]),
    (lambda ops: ops.rms_norm_identity(rand(2, 4), rand(4), -1.0), ["eps"]),
    (lambda ops: ops.layer_norm_identity(rand(2, 4), None, rand(3), 1e-5), ["bias", "(4)"]),
    (lambda ops: ops.gate_half(rand(2, 4), rand(2, 4, dtype=torch.float32)), ["gate_half", "dtype"]),
    (lambda ops: ops.silu_identity(torch.ones(3, dtype=torch.int64)), ["silu_identity", "floating"]),
])
def test_bad_arguments(ops, call, words):
    with pytest.raises(RuntimeError) as e:
        call(ops)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# ---- epsilon rule -----------------------------------------------------------------------------

EPS_LAYERS = {
    "linear": (lambda ops: ops.linear_epsilon, lambda x, w, b, e, op: op(x, w, b, e), F.linear,
               LAYERS["linear"][3]),
    "conv1d": (lambda ops: ops.conv1d_epsilon, lambda x, w, b, e, op: op(x, w, b, [1], [3], [1], 6, e),
               LAYERS["conv1d"][2], LAYERS["conv1d"][3]),
    "conv2d": (lambda ops: ops.conv2d_epsilon, lambda x, w, b, e, op: op(x, w, b, [4, 4], [0, 0], [1, 1], 1, e),
               LAYERS["conv2d"][2], LAYERS["conv2d"][3]),
}


@pytest.mark.parametrize("layer", list(EPS_LAYERS))
@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 0.5])
def test_epsilon_rule(ops, layer, epsilon):
    get_op, call, f, make = EPS_LAYERS[layer]
    op = get_op(ops)
    x, w, b = make()
    out = call(x, w, b, epsilon, op)
    torch.testing.assert_close(out, f(x, w, b), rtol=1e-14, atol=1e-14)
    g = rand(*out.shape, seed=9)
    _, (gx,) = grads_of(lambda x: call(x, w, b, epsilon, op), [x.clone()], g)

    def reference(x):  # z * (z / (z + eps sign z)).detach(): gradient g z / (z + eps sign z) through z
        z = f(x, w, b)
        sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        return z * (z / (z + epsilon * sign)).detach()

    _, (gx_ref,) = grads_of(reference, [x.clone()], g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-11, atol=1e-11)
    # with zero bias, relevance is conserved up to what epsilon absorbs; exactly for epsilon = 0
    zb = torch.zeros_like(b)
    out0, (gx0,) = grads_of(lambda x: call(x, w, zb, epsilon, op), [x.clone()], g)
    r_in, r_out = (x * gx0).sum(), (out0 * g).sum()
    if epsilon == 0.0:
        torch.testing.assert_close(r_in, r_out, rtol=1e-12, atol=1e-12)
    elif epsilon == 0.5:
        assert abs(r_in) < abs(r_out) + 1e-9 or not torch.isclose(r_in, r_out)
