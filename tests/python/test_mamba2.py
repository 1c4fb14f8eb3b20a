"""Mamba-2 (SSD) models: the C++ model and `mamba-lrp` against the independent pure-PyTorch
float64 reference (mamba2_reference.py, a sequential loop written from the equations, itself
checked against the chunked SSD form here)."""
import json

import pytest
import torch

import fixtures
import st_io
from cli import cpp_logits, explain_json, relevance_of, run
from hf_mamba_reference import explain as ref_explain
from mamba2_reference import Mamba2LMReference, ssd_matrix, ssd_scan_chunked, ssd_scan_loop

METHODS = ["mambalrp", "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate"]
REF_MODE = {"gi": "standard"}


@pytest.fixture(scope="module", params=[1, 2], ids=["groups1", "groups2"])
def model_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"mamba2_g{request.param}")
    fixtures.write_mamba2_dir(d, {"n_groups": request.param}, seed=request.param)
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # L = 13 crosses the chunk boundaries of chunk_size 4 (the reference's chunked check too).
    p = tmp_path_factory.mktemp("inputs") / "ids.safetensors"
    ids = fixtures.random_ids(3, 13, 64, seed=4)
    fixtures.write_inputs(p, input_ids=ids)
    return p, ids


# ---- the reference against itself: loop, chunked form, SSD matrix -----------------------------

@pytest.mark.parametrize("groups,chunk", [(1, 4), (2, 4), (2, 5), (4, 16)])
def test_reference_loop_equals_chunked_form_and_matrix(groups, chunk):
    g = torch.Generator().manual_seed(groups * 10 + chunk)
    batch, L, H, P, N = 2, 13, 4, 3, 5
    x = torch.randn(batch, L, H, P, generator=g, dtype=torch.float64)
    dt = torch.rand(batch, L, H, generator=g, dtype=torch.float64) * 0.5
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 3
    B = torch.randn(batch, L, groups, N, generator=g, dtype=torch.float64)
    C = torch.randn(batch, L, groups, N, generator=g, dtype=torch.float64)
    D = torch.randn(H, generator=g, dtype=torch.float64)
    loop = ssd_scan_loop(x, dt, A, B, C, D)
    # float64 rounding over 13 steps of O(1) terms: 1e-12 leaves three orders of margin
    torch.testing.assert_close(ssd_scan_chunked(x, dt, A, B, C, D, chunk), loop, rtol=1e-12, atol=1e-12)
    M = ssd_matrix(dt, A, B, C)                                        # (B, H, L, L)
    via_matrix = torch.einsum("bhij,bjhp->bihp", M, x) + D[:, None] * x
    torch.testing.assert_close(via_matrix, loop, rtol=1e-12, atol=1e-12)


# ---- forward -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-5), ("float64", 1e-10)])
def test_forward_equals_reference(model_dir, inputs, tmp_path, dtype, rtol):
    path, ids = inputs
    ours = cpp_logits(model_dir, path, dtype, tmp_path)
    ref = Mamba2LMReference.from_dir(model_dir, dtype=torch.float64)(ids)
    assert ours.dtype == (torch.float64 if dtype == "float64" else torch.float32) and ours.shape == ref.shape
    # float32: single-precision rounding through 2 layers (1e-7 per op, a few hundred ops)
    err = ((ours.double() - ref).abs().max() / ref.abs().max()).item()
    assert err < rtol, err


@pytest.mark.parametrize("variant", ["classifier", "mamba_ssm", "sharded", "pytorch_bin", "untied_bias",
                                     "dt_limit", "groups4_state17"])
def test_model_variants_forward(tmp_path, variant):
    over, kw = {}, {}
    if variant == "classifier":
        over = {"num_labels": 3}
    elif variant == "mamba_ssm":
        kw = {"mamba_ssm": True}
    elif variant == "sharded":
        kw = {"shards": 3}
    elif variant == "pytorch_bin":
        kw = {"pytorch_bin": True}
    elif variant == "untied_bias":
        over = {"tie_word_embeddings": False, "use_bias": True}
    elif variant == "dt_limit":
        over = {"time_step_limit": [0.02, 0.05]}  # clamps most of the log-uniform [1e-3, 1e-1] steps
    elif variant == "groups4_state17":
        over = {"n_groups": 4, "state_size": 17}
    d = tmp_path / "m"
    fixtures.write_mamba2_dir(d, over, seed=5, **kw)
    ids = fixtures.random_ids(2, 9, 64, seed=3)
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids)
    ours = cpp_logits(d, tmp_path / "ids.safetensors", "float64", tmp_path)
    ref = Mamba2LMReference.from_dir(d, dtype=torch.float64)(ids)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_config_infinity_is_what_hf_writes(tmp_path):
    fixtures.write_mamba2_dir(tmp_path, seed=0)
    text = (tmp_path / "config.json").read_text()
    assert "Infinity" in text  # Python's json wrote the HF default time_step_limit as is


# ---- relevance ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_relevance_equals_reference(model_dir, inputs, method):
    path, ids = inputs
    out = explain_json(model_dir, path, method)
    assert out["model_type"] == "mamba2" and out["method"] == method
    R, f, targets = ref_explain(Mamba2LMReference.from_dir(model_dir), ids, REF_MODE.get(method, method))
    assert [e["target"] for e in out["explanations"]] == targets.tolist()
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]], dtype=torch.float64), f,
                               rtol=1e-10, atol=1e-10)
    # float64 both sides, different summation orders: 1e-9 relative to the largest value
    ours = relevance_of(out)
    torch.testing.assert_close(ours, R, rtol=1e-9, atol=1e-9 * R.abs().max().item())


def test_composite(model_dir, inputs, tmp_path):
    path, ids = inputs
    comp = {"conv1d": {"rule": "gamma", "gamma": 0.25}, "out_proj": {"rule": "epsilon", "epsilon": 1e-3},
            "in_proj": {"rule": "gamma", "gamma": 0.1}}
    (tmp_path / "c.json").write_text(json.dumps(comp))
    out = explain_json(model_dir, path, extra=("--composite", tmp_path / "c.json"))
    R, _, _ = ref_explain(Mamba2LMReference.from_dir(model_dir), ids, "mambalrp", composite=comp)
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())


def test_conservation_with_zero_bias(model_dir, inputs):
    path, _ = inputs
    for method, conserved in [("mambalrp", True), ("gi", False)]:
        out = explain_json(model_dir, path, method, extra=("--zero-bias",))
        for e in out["explanations"]:
            gap = abs(e["relevance_sum"] - e["logit"])
            if conserved:  # float64: sum R = f to rounding
                assert gap <= 1e-9 * max(1.0, abs(e["logit"])), (method, gap)
            else:
                assert gap > 1e-3 * max(1.0, abs(e["logit"])), (method, gap)


def test_left_padding_and_batch(model_dir, tmp_path):
    ids = fixtures.random_ids(1, 10, 64, seed=9)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.int64), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.int64), torch.ones(1, 10, dtype=torch.int64)], dim=1)
    batch_ids = torch.cat([padded, fixtures.random_ids(1, 13, 64, seed=10)])
    batch_mask = torch.cat([mask, torch.ones(1, 13, dtype=torch.int64)])
    fixtures.write_inputs(tmp_path / "pad.safetensors", input_ids=batch_ids, attention_mask=batch_mask)
    fixtures.write_inputs(tmp_path / "one.safetensors", input_ids=ids)
    pad = explain_json(model_dir, tmp_path / "pad.safetensors")["explanations"]
    one = explain_json(model_dir, tmp_path / "one.safetensors")["explanations"][0]
    assert pad[0]["relevance"][:3] == [0.0, 0.0, 0.0]
    torch.testing.assert_close(torch.tensor(pad[0]["relevance"][3:]), torch.tensor(one["relevance"]), rtol=1e-9,
                               atol=1e-12)
    R, _, _ = ref_explain(Mamba2LMReference.from_dir(model_dir), batch_ids, "mambalrp", attention_mask=batch_mask)
    torch.testing.assert_close(torch.tensor([e["relevance"] for e in pad], dtype=torch.float64), R, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("recompute", ["on", "off"])
def test_recompute_keeps_the_relevance(model_dir, tmp_path, recompute):
    """--recompute on runs each mixer as one node that keeps its input, y, Delta, B, C and
    recomputes z and the conv in the backward (models/mamba2_explanation_node.cpp); off keeps what the
    composition of rule ops keeps. Both equal the reference, with left padding and without; the
    ablations and a composite fall back to the composition under --recompute on."""
    ids = torch.cat([fixtures.random_ids(1, 11, 64, seed=23), fixtures.random_ids(1, 11, 64, seed=24)])
    mask = torch.ones(2, 11, dtype=torch.int64)
    mask[0, :4] = 0
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids, attention_mask=mask)
    fixtures.write_inputs(tmp_path / "nomask.safetensors", input_ids=ids)
    ref = Mamba2LMReference.from_dir(model_dir)
    for inputs, m in (("ids.safetensors", mask), ("nomask.safetensors", None)):
        for method in ("mambalrp", "mambalrp-no-gate"):
            out = explain_json(model_dir, tmp_path / inputs, method, extra=("--recompute", recompute))
            R, _, _ = ref_explain(ref, ids, REF_MODE.get(method, method), attention_mask=m)
            torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    comp = {"out_proj": {"rule": "epsilon", "epsilon": 1e-3}}
    (tmp_path / "c.json").write_text(json.dumps(comp))
    out = explain_json(model_dir, tmp_path / "nomask.safetensors",
                       extra=("--recompute", recompute, "--composite", tmp_path / "c.json"))
    R, _, _ = ref_explain(ref, ids, "mambalrp", composite=comp)
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())


# ---- bad configs and tensors: exit 2, one line ---------------------------------------------------

def _bad_config(tmp_path, edit):
    d = tmp_path / "m"
    fixtures.write_mamba2_dir(d, seed=0)
    cfg = json.loads((d / "config.json").read_text())
    text = edit(cfg)
    (d / "config.json").write_text(text if isinstance(text, str) else json.dumps(cfg))
    return d


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c.update(n_groups=3), "n_groups"),
    (lambda c: c.update(num_heads=6), "num_heads * head_dim"),
    (lambda c: c.update(state_size=300), "state_size"),
    (lambda c: c.update(time_step_limit=[0.1, 0.01]), "time_step_limit"),
    (lambda c: c.update(time_step_limit="big"), "time_step_limit"),
    (lambda c: c.update(rms_norm=False), "rms_norm"),
    (lambda c: json.dumps(c).replace('"vocab_size"', 'Infinity'), "invalid JSON"),      # not a value position
    (lambda c: json.dumps(c).replace('Infinity', 'Infinityx'), "invalid JSON"),
    (lambda c: json.dumps(c)[:-5], "invalid JSON"),
    (lambda c: c.update(hidden_act="gelu"), "hidden_act"),
])
def test_bad_config_exit_2(tmp_path, edit, needle):
    d = _bad_config(tmp_path, edit)
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=fixtures.random_ids(1, 5, 64))
    p = run("explain", "--model", d, "--input", tmp_path / "ids.safetensors", "--json", "-", check=False)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_mamba_ssm_refusals(tmp_path):
    for key, value, needle in [("d_intermediate", 64, "d_intermediate"), ("attn_layer_idx", [1], "attn_layer_idx")]:
        d = tmp_path / key
        fixtures.write_mamba2_dir(d, seed=0, mamba_ssm=True)
        cfg = json.loads((d / "config.json").read_text())
        cfg[key] = value
        (d / "config.json").write_text(json.dumps(cfg))
        p = run("forward", "--model", d, "--ids", "1,2,3", "--output", tmp_path / "o.safetensors", check=False)
        assert p.returncode == 2 and needle in p.stderr and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("tensor_edit,needle", [
    ("d_mlp", "d_mlp = 4"),
    ("shape", "backbone.layers.1.mixer.dt_bias"),
    ("missing", "backbone.layers.0.mixer.norm.weight"),
])
def test_bad_tensors_exit_2(tmp_path, tensor_edit, needle):
    d = tmp_path / "m"
    _, sd = fixtures.write_mamba2_dir(d, seed=0)
    if tensor_edit == "d_mlp":  # 2 * d_mlp extra rows in every in_proj
        for k in [k for k in sd if k.endswith("in_proj.weight")]:
            sd[k] = torch.cat([torch.zeros(8, sd[k].shape[1]), sd[k]])
    elif tensor_edit == "shape":
        sd["backbone.layers.1.mixer.dt_bias"] = torch.zeros(7)
    else:
        del sd["backbone.layers.0.mixer.norm.weight"]
    st_io.save_file(sd, str(d / "model.safetensors"))
    p = run("forward", "--model", d, "--ids", "1,2,3", "--output", tmp_path / "o.safetensors", check=False)
    assert p.returncode == 2 and needle in p.stderr and p.stderr.count("\n") == 1, p.stderr


# ---- the other methods ---------------------------------------------------------------------------

def _baseline_relevance(model, inputs, method, *extra):
    out = explain_json(model, inputs, method, extra=extra)
    return relevance_of(out), out


def _traced(ref, ids):
    """Per layer the channels' SSD matrices and dF/dalpha (F: the argmax logit, last position)."""
    with torch.enable_grad():
        traced = []
        logits = ref.forward_embeddings(ref.embed(ids), None, "standard", trace=traced)[:, -1, :]
        f = logits.gather(1, logits.argmax(-1, keepdim=True))[:, 0]
        grads = torch.autograd.grad(f.sum(), [leaf for _, leaf in traced])
    return [alpha for alpha, _ in traced], list(grads)


def test_hidden_attention_methods_equal_reference(model_dir, inputs):
    import explainer_reference as xr
    path, ids = inputs
    ref = Mamba2LMReference.from_dir(model_dir)
    alphas, grads = _traced(ref, ids)
    got, _ = _baseline_relevance(model_dir, path, "attnroll", "--batch-size", 1)
    torch.testing.assert_close(got, xr.attention_rollout(alphas), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(got.sum(1), torch.ones(ids.shape[0], dtype=torch.float64))  # rows stochastic
    got, _ = _baseline_relevance(model_dir, path, "mambaattr")
    torch.testing.assert_close(got, xr.mamba_attr(alphas, grads), rtol=1e-8, atol=1e-12)


def test_ig_and_smoothgrad_equal_reference(model_dir, inputs):
    import explainer_reference as xr
    path, ids = inputs
    ref = Mamba2LMReference.from_dir(model_dir)
    got, out = _baseline_relevance(model_dir, path, "ig", "--ig-steps", 9, "--ig-method", "riemann_trapezoid")
    torch.testing.assert_close(got, xr.integrated_gradients(ref, ids, 9, "trapezoid"), rtol=1e-8, atol=1e-10)
    # SmoothGrad with no noise is Gradient x Input
    got, _ = _baseline_relevance(model_dir, path, "smoothgrad", "--noise", 0, "--samples", 2)
    R, _, _ = ref_explain(ref, ids, "standard")
    torch.testing.assert_close(got, R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    a, _ = _baseline_relevance(model_dir, path, "random", "--seed", 3)
    b, _ = _baseline_relevance(model_dir, path, "random", "--seed", 3)
    assert torch.equal(a, b) and a.shape == R.shape


def test_evaluate_and_train_init(tmp_path):
    """train --init with a Mamba-2 config, then evaluate and explain the trained classifier."""
    cfg = dict(fixtures.HF_MAMBA2_SMALL, num_labels=2)
    (tmp_path / "init.json").write_text(json.dumps(cfg))
    ids = fixtures.random_ids(16, 7, 64, seed=11)
    labels = (ids[:, -1] % 2).to(torch.int64)  # learnable: the parity of the last token
    fixtures.write_inputs(tmp_path / "data.safetensors", input_ids=ids, labels=labels)
    run("train", "--init", tmp_path / "init.json", "--data", tmp_path / "data.safetensors", "--out",
        tmp_path / "trained", "--epochs", 2, "--batch-size", 8, "--quiet")
    saved = json.loads((tmp_path / "trained" / "config.json").read_text())
    assert saved["model_type"] == "mamba2" and saved["num_labels"] == 2
    # the trained directory loads and explains as any Mamba-2 classifier, against the reference
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids[:3])
    out = explain_json(tmp_path / "trained", tmp_path / "ids.safetensors")
    R, _, _ = ref_explain(Mamba2LMReference.from_dir(tmp_path / "trained"), ids[:3], "mambalrp")
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    run("evaluate", "--model", tmp_path / "trained", "--data", tmp_path / "data.safetensors", "--methods",
            "mambalrp,gi,random", "--steps", 4, "--json", tmp_path / "eval.json")
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["model_type"] == "mamba2"
    assert set(report["methods"]) == {"mambalrp", "gi", "random"}

# generate on Mamba-2: tests/python/test_generate_mamba2.py
