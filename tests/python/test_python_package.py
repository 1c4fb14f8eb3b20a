"""The Python package python/mamba_lrp beyond selective_scan_fn (test_selective_scan_fn.py):
the rule ops as functions against pure-PyTorch forms of the rules, and explain() (the C++
explainer behind torch.ops.mamba_lrp.explain) against the independent Python references of
the Mamba LM (hf_mamba_reference.py) and Vision Mamba (vim_reference.py)."""
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F

import fixtures
from hf_mamba_reference import MambaLMReference, apply_rule, explain as ref_explain
from vim_reference import VimReference, explain_vim as ref_explain_vim

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
import mamba_lrp  # noqa: E402


def grads(fn, *inputs, seed=3):
    """fn's output and the gradients of <output, g> for a random g, at float64 leaves."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    out.backward(g)
    return out.detach(), [leaf.grad for leaf in leaves]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# float64 throughout: the rules are a handful of operations per element, the same math in
# another order; 1e-12 is a few thousand ulps of slack on values of order 1-10.
TIGHT = dict(rtol=1e-12, atol=1e-12)


def check_same(fn, ref, *inputs):
    out, g = grads(fn, *inputs)
    ref_out, ref_g = grads(ref, *inputs)
    torch.testing.assert_close(out, ref_out, **TIGHT)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b, **TIGHT)


def test_silu_identity_and_gate_half():
    x, y = rand(3, 7, seed=1), rand(3, 7, seed=2)
    check_same(mamba_lrp.silu_identity, lambda t: t * torch.sigmoid(t).detach(), x)
    check_same(mamba_lrp.gate_half, lambda a, b: 0.5 * (a * b.detach()) + 0.5 * (a.detach() * b), x, y)


def test_norm_rules_hold_the_scale_constant():
    x, w, b = rand(2, 5, 8, seed=1), rand(8, seed=2), rand(8, seed=3)

    def rms_ref(t, weight):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5).detach() * weight

    def ln_ref(t, weight, bias):
        c = t - t.mean(-1, keepdim=True)
        return c * torch.rsqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5).detach() * weight + bias

    out, (gx,) = grads(lambda t: mamba_lrp.rms_norm_identity(t, w, 1e-5), x)
    ref, (rx,) = grads(lambda t: rms_ref(t, w), x)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(gx, rx, **TIGHT)
    out, (gx,) = grads(lambda t: mamba_lrp.layer_norm_identity(t, w, b, 1e-5), x)
    ref, (rx,) = grads(lambda t: ln_ref(t, w, b), x)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(gx, rx, **TIGHT)


@pytest.mark.parametrize("rule", [{"rule": "gamma", "gamma": 0.25}, {"rule": "epsilon", "epsilon": 1e-2}])
def test_linear_and_conv_rules(rule):
    """The package's linear/conv rule functions against hf_mamba_reference.apply_rule (a
    from-scratch form of the gamma and epsilon rules), keyword arguments passed through."""
    gamma = rule["rule"] == "gamma"
    k = {"gamma": rule["gamma"]} if gamma else {"epsilon": rule["epsilon"]}
    x, w, b = rand(4, 6, seed=1), rand(5, 6, seed=2), rand(5, seed=3)
    fn = mamba_lrp.linear_gamma if gamma else mamba_lrp.linear_epsilon
    out, (gx,) = grads(lambda t: fn(t, w, b, **k), x)
    ref, (rx,) = grads(lambda t: apply_rule(F.linear, t, w, b, rule), x)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(gx, rx, **TIGHT)

    x1, w1 = rand(2, 4, 9, seed=4), rand(6, 2, 3, seed=5)  # groups 2, stride 2, padding 1
    fn = mamba_lrp.conv1d_gamma if gamma else mamba_lrp.conv1d_epsilon
    conv = lambda i, wt, bias: F.conv1d(i, wt, bias, stride=2, padding=1, groups=2)
    out, (gx,) = grads(lambda t: fn(t, w1, None, stride=2, padding=1, groups=2, **k), x1)
    ref, (rx,) = grads(lambda t: apply_rule(conv, t, w1, None, rule), x1)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(gx, rx, **TIGHT)

    x2, w2, b2 = rand(2, 3, 6, 6, seed=6), rand(4, 3, 2, 2, seed=7), rand(4, seed=8)
    fn = mamba_lrp.conv2d_gamma if gamma else mamba_lrp.conv2d_epsilon
    conv = lambda i, wt, bias: F.conv2d(i, wt, bias, stride=(2, 2))
    out, (gx,) = grads(lambda t: fn(t, w2, b2, stride=(2, 2), **k), x2)
    ref, (rx,) = grads(lambda t: apply_rule(conv, t, w2, b2, rule), x2)
    torch.testing.assert_close(out, ref, **TIGHT)
    torch.testing.assert_close(gx, rx, **TIGHT)


# ---- explain() ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_small")
    fixtures.write_hf_mamba_dir(d, seed=1)
    return d


@pytest.fixture(scope="module")
def lm_ids():
    return fixtures.random_ids(2, 11, 64, seed=4)


# float64 model, the same computation as the reference in another order: the relevance
# passes through 2 layers of O(10) sums each; 1e-9 relative leaves ample room (as
# test_mamba_lm.py's CLI comparison).
def assert_relevance(ours, ref):
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9 * ref.abs().max().item())


@pytest.mark.parametrize("method", ["mambalrp", "gi", "mambalrp-no-gate"])
def test_explain_lm_equals_reference(lm_dir, lm_ids, method):
    R, f, targets = mamba_lrp.explain(lm_dir, torch.as_tensor(lm_ids), method=method, dtype=torch.float64,
                                      return_logits=True)
    ref = MambaLMReference.from_dir(lm_dir, dtype=torch.float64)
    R_ref, f_ref, t_ref = ref_explain(ref, lm_ids, "standard" if method == "gi" else method)
    assert R.shape == (2, 11) and R.dtype == torch.float64
    assert targets.tolist() == t_ref.tolist()
    torch.testing.assert_close(f, f_ref, rtol=1e-10, atol=1e-10)
    assert_relevance(R, R_ref)


def test_explain_lm_target_position_and_conservation(lm_dir, lm_ids):
    ids = torch.as_tensor(lm_ids)
    R = mamba_lrp.explain(lm_dir, ids[0], target=7, position=5, dtype=torch.float64)  # (L) ids: one row
    R_ref, _, _ = ref_explain(MambaLMReference.from_dir(lm_dir, dtype=torch.float64), ids[:1], "mambalrp",
                              target=7, position=5)
    assert_relevance(R, R_ref)
    R, f, _ = mamba_lrp.explain(lm_dir, ids, target=[3, 9], zero_bias=True, dtype=torch.float64, return_logits=True)
    # MambaLRP conserves with every bias zero: sum R = f to rounding.
    torch.testing.assert_close(R.sum(-1), f, rtol=1e-9, atol=1e-9)


def test_explain_vim_equals_reference(tmp_path):
    fixtures.write_vim_dir(tmp_path, seed=1)
    x = fixtures.random_pixels(2, seed=5)
    R = mamba_lrp.explain(tmp_path, x, dtype=torch.float64)
    ref = ref_explain_vim(VimReference.from_dir(tmp_path, dtype=torch.float64), x.double(), "mambalrp")
    assert_relevance(R, ref.token_relevance)


@pytest.mark.parametrize("kwargs,words", [
    (dict(method="shap"), "unknown method \"shap\""),
    (dict(dtype=torch.float16), "dtype must be torch.float32 or torch.float64"),
    (dict(target=10_000), "target"),
])
def test_explain_bad_arguments(lm_dir, lm_ids, kwargs, words):
    with pytest.raises(ValueError, match=words):
        mamba_lrp.explain(lm_dir, torch.as_tensor(lm_ids), **kwargs)


def test_explain_bad_inputs(lm_dir, tmp_path):
    with pytest.raises(ValueError, match="reads token ids"):
        mamba_lrp.explain(lm_dir, torch.rand(2, 5))
    with pytest.raises(ValueError, match="config.json"):
        mamba_lrp.explain(tmp_path, torch.tensor([1, 2, 3]))
