"""The baseline explainers of mamba-lrp explain (smoothgrad, ig, attnroll, mambaattr, random)
on a tiny model against the independent Python references of explainer_reference.py."""
import json

import pytest
import torch

import explainer_reference as xr
import fixtures
from hf_mamba_reference import MambaLMReference, explain as ref_explain

from cli import BUILD, CLI, ROOT, run  # noqa: F401


def relevance(model, inputs, method, *extra):
    p = run("explain", "--model", model, "--input", inputs, "--method", method, "--dtype", "float64",
            "--json", "-", *extra)
    out = json.loads(p.stdout)
    return torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64), out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("explainers")
    model_dir = d / "model"
    # Larger time steps than the default initialisation, so that the hidden attention
    # reaches back over several tokens and the rollouts are not the identity.
    fixtures.write_hf_mamba_dir(model_dir, seed=2)
    ids = fixtures.random_ids(2, 6, 64, seed=5)
    inputs = d / "ids.safetensors"
    fixtures.write_inputs(inputs, input_ids=ids)
    ref = MambaLMReference.from_dir(model_dir, dtype=torch.float64)
    return model_dir, inputs, ids, ref


@pytest.mark.parametrize("cli_method,rule", [("riemann_trapezoid", "trapezoid"), ("riemann_left", "left"),
                                             ("riemann_middle", "middle"), ("riemann_right", "right")])
def test_ig_riemann_matches_python(setup, cli_method, rule):
    model, inputs, ids, ref = setup
    got, _ = relevance(model, inputs, "ig", "--ig-steps", 9, "--ig-method", cli_method, "--batch-size", 4)
    want = xr.integrated_gradients(ref, ids, 9, rule)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_ig_gauss_legendre_default_and_completeness(setup):
    model, inputs, ids, ref = setup
    got, out = relevance(model, inputs, "ig")  # default: 50 Gauss-Legendre nodes, zero baseline
    want = xr.gauss_legendre_ig(ref, ids, 50)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_ig_completeness_from_a_token_baseline(setup):
    # sum R = f(x) - f(baseline) up to the quadrature error. (From the zero embedding the
    # path starts where RMSNorm's rsqrt(mean(x^2) + eps) is steep: 50 nodes are not enough.)
    model, inputs, ids, ref = setup
    got, out = relevance(model, inputs, "ig", "--ig-baseline", 3, "--ig-steps", 64)
    f = torch.tensor([e["logit"] for e in out["explanations"]], dtype=torch.float64)
    targets = torch.tensor([e["target"] for e in out["explanations"]])
    base = ref.embed(torch.tensor([[3]])).expand(2, 6, -1)
    f0 = ref.forward_embeddings(base)[:, -1, :].gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(got.sum(1), f - f0, rtol=1e-5, atol=1e-5)


def test_ig_token_baseline(setup):
    model, inputs, ids, ref = setup
    got, _ = relevance(model, inputs, "ig", "--ig-steps", 6, "--ig-method", "riemann_trapezoid",
                       "--ig-baseline", 3)
    base = ref.embed(torch.tensor([[3]]))
    want = xr.integrated_gradients(ref, ids, 6, "trapezoid", baseline=base)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_smoothgrad_noise_zero_is_gi(setup):
    model, inputs, ids, ref = setup
    got, _ = relevance(model, inputs, "smoothgrad", "--noise", 0, "--samples", 3)
    gi, _, _ = ref_explain(ref, ids, "standard")
    torch.testing.assert_close(got, gi, rtol=1e-8, atol=1e-10)


def test_smoothgrad_seeded_samples_average(setup):
    model, inputs, _, _ = setup
    a, _ = relevance(model, inputs, "smoothgrad", "--seed", 7, "--samples", 4, "--batch-size", 3)
    b, _ = relevance(model, inputs, "smoothgrad", "--seed", 7, "--samples", 4, "--batch-size", 8)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # batching changes nothing
    c, _ = relevance(model, inputs, "smoothgrad", "--seed", 8, "--samples", 4)
    assert not torch.allclose(a, c)  # the seed matters
    gi, _ = relevance(model, inputs, "gi")
    assert not torch.allclose(a, gi)  # noise 0.15 of the range changes the gradients


def test_hidden_attention_rollout_matches_loops(setup):
    model, inputs, ids, ref = setup
    alphas, grads, f, logits = xr.traced_attention(ref, ids)
    # the alpha-based forward is the model's forward
    torch.testing.assert_close(logits, ref(ids)[:, -1, :], rtol=1e-9, atol=1e-9)
    got, out = relevance(model, inputs, "attnroll", "--batch-size", 1)
    torch.testing.assert_close(got, xr.attention_rollout(alphas), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(got.sum(1), torch.ones(2, dtype=torch.float64))  # rows stay stochastic
    got, _ = relevance(model, inputs, "mambaattr")
    torch.testing.assert_close(got, xr.mamba_attr(alphas, grads), rtol=1e-8, atol=1e-12)


def test_rollout_two_layers_by_hand():
    # Two layers of channel-mean attention, L = 2: M_l = (A_l + I) row-normalised, M_2 M_1.
    a1 = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)[:, None]   # (B, I=1, L, L)
    a2 = torch.tensor([[[0.0, 0.0], [3.0, 1.0]]], dtype=torch.float64)[:, None]
    m1 = torch.tensor([[1.0, 0.0], [1 / 3, 2 / 3]], dtype=torch.float64)
    m2 = torch.tensor([[1.0, 0.0], [0.6, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(xr.attention_rollout([a1, a2])[0], (m2 @ m1)[-1])


def test_attention_methods_ignore_left_padding(setup, tmp_path):
    model, _, ids, _ = setup
    padded = torch.cat([torch.zeros(2, 2, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(2, 2, dtype=torch.long), torch.ones_like(ids)], 1)
    mask[1, :2] = 1
    padded[1, :2] = torch.tensor([7, 9])
    p = tmp_path / "padded.safetensors"
    fixtures.write_inputs(p, input_ids=padded, attention_mask=mask)
    alone = tmp_path / "alone.safetensors"
    fixtures.write_inputs(alone, input_ids=ids[:1])
    for method in ["attnroll", "mambaattr", "ig", "smoothgrad"]:
        got, _ = relevance(model, p, method, "--noise", 0)
        want, _ = relevance(model, alone, method, "--noise", 0)
        assert torch.all(got[0, :2] == 0), method
        torch.testing.assert_close(got[0, 2:], want[0], rtol=1e-7, atol=1e-9, msg=method)


def test_random_seeded_and_reproducible(setup):
    model, inputs, _, _ = setup
    a, _ = relevance(model, inputs, "random", "--seed", 3)
    b, _ = relevance(model, inputs, "random", "--seed", 3)
    c, _ = relevance(model, inputs, "random", "--seed", 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 1 and a.shape == (2, 6)


@pytest.mark.parametrize("args,msg", [
    (["--method", "ig", "--ig-method", "simpson"], "unknown ig method"),
    (["--method", "smoothgrad", "--samples", "0"], "--samples"),
    (["--method", "smoothgrad", "--noise", "-1"], "--noise"),
    (["--method", "ig", "--ig-baseline", "99"], "outside the vocabulary"),
    (["--method", "attnroll", "--batch-size", "0"], "--batch-size"),
    (["--method", "nonsense"], "unknown method"),
])
def test_bad_method_options_exit_2(setup, args, msg):
    model, inputs, _, _ = setup
    p = run("explain", "--model", model, "--input", inputs, *args, check=False)
    assert p.returncode == 2 and msg in p.stderr, p.stderr
