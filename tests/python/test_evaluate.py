"""mamba-lrp evaluate: token flipping on a hand-built model whose answer is known, the
invariants of the curves on random models (Mamba and Vim), the report files, and bad --data
files (exit status 2 with a reason)."""
import json
import xml.etree.ElementTree as ET

import pytest
import torch

import fixtures
import st_io
from hf_mamba_reference import MambaLMReference, explain as ref_explain

from cli import BUILD, CLI, ROOT, run  # noqa: F401


def evaluate(model, data, methods, tmp_path, *extra):
    out = tmp_path / "report.json"
    p = run("evaluate", "--model", model, "--data", data, "--methods", methods, "--json", out, *extra)
    return json.loads(out.read_text()), p


@pytest.fixture(scope="module")
def last_token_model(tmp_path_factory):
    """A classifier whose logits read only the last token's embedding: every mixer's
    out_proj is zero, so the residual stream carries the embeddings unchanged, and the head
    rows are w and -w (the argmax logit is |w . rmsnorm(e_last)| >= 0)."""
    d = tmp_path_factory.mktemp("last_token")
    cfg, sd = fixtures.write_hf_mamba_dir(d, {"num_labels": 2}, seed=3)
    for k in sd:
        if k.endswith("out_proj.weight"):
            sd[k] = torch.zeros_like(sd[k])
    w = sd["lm_head.weight"][0]
    sd["lm_head.weight"] = torch.stack([w, -w])
    fixtures._write_weights(str(d), sd, torch.float32)
    return d


def head_score(ref, e, target):
    """The class logit when the last position holds embedding e (H)."""
    cfg, sd = ref.config, ref.sd
    h = e * torch.rsqrt(e.square().mean() + cfg["layer_norm_epsilon"]) * sd["backbone.norm_f.weight"]
    return float(ref.head_w[target] @ h)


@pytest.mark.parametrize("baseline", ["zero", "5"])
def test_known_curves_on_last_token_model(last_token_model, tmp_path, baseline):
    ids = fixtures.random_ids(3, 8, 64, seed=11)
    data = tmp_path / "data.safetensors"
    fixtures.write_inputs(data, input_ids=ids)
    rep, _ = evaluate(last_token_model, data, "mambalrp", tmp_path, "--steps", 5, "--baseline", baseline,
                      "--dtype", "float64")
    ref = MambaLMReference.from_dir(last_token_model, dtype=torch.float64)
    assert rep["fractions"] == [0, 0.25, 0.5, 0.75, 1]
    emb = ref.sd["backbone.embeddings.weight"]
    base = torch.zeros(emb.shape[1], dtype=torch.float64) if baseline == "zero" else emb[5]
    logits = ref(ids)[:, -1, :]
    morf, lerf, ins_m, ins_l = [], [], [], []
    for b in range(3):
        t = int(logits[b].argmax())
        f = head_score(ref, emb[ids[b, -1]], t)
        fb = head_score(ref, base, t)
        assert f >= 0
        # m_k = round(x_k 8) = 0, 2, 4, 6, 8 tokens; the last token is the most relevant,
        # the others have relevance 0 (ties: by position).
        morf.append([f, fb, fb, fb, fb])
        lerf.append([f, f, f, f, fb])
        ins_m.append([fb, f, f, f, f])
        # least relevant first: positions 0..m-1 inserted, packed to the end.
        ins_l.append([fb] + [head_score(ref, emb[ids[b, m - 1]], t) for m in (2, 4, 6)] + [f])
    curves = rep["methods"]["mambalrp"]["curves"]
    for name, want in [("morf", morf), ("lerf", lerf), ("insert_morf", ins_m), ("insert_lerf", ins_l)]:
        torch.testing.assert_close(torch.tensor(curves[name]["mean"], dtype=torch.float64),
                                   torch.tensor(want, dtype=torch.float64).mean(0), rtol=1e-9, atol=1e-9, msg=name)
    # areas by the trapezoid rule, and the deltas
    f = torch.tensor([m[0] for m in morf])
    fb = torch.tensor([m[1] for m in morf])
    a = rep["methods"]["mambalrp"]
    torch.testing.assert_close(a["area"]["morf"]["mean"], float((f / 8 + fb * 7 / 8).mean()), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(a["dA_F"]["mean"], float((0.75 * (f - fb)).mean()), rtol=1e-7, atol=1e-7)
    d = 0.75 * (f - fb)
    torch.testing.assert_close(a["dA_F"]["se"], float(d.std() / 3 ** 0.5), rtol=1e-6, atol=1e-7)


def test_curve_invariants_conservation_and_files(tmp_path):
    model = tmp_path / "model"
    fixtures.write_hf_mamba_dir(model, {"num_labels": 3}, seed=4)
    ids = fixtures.random_ids(4, 7, 64, seed=2)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    labels = torch.tensor([0, 1, 2, 1])
    data = tmp_path / "data.safetensors"
    fixtures.write_inputs(data, input_ids=ids, attention_mask=mask, labels=labels)
    methods = "mambalrp,gi,random,ig,smoothgrad,attnroll,mambaattr,lrp-ln,mambalrp-no-ssm"
    rep, p = evaluate(model, data, methods, tmp_path, "--steps", 4, "--dtype", "float64",
                      "--markdown", tmp_path / "t.md", "--plot", tmp_path / "p.svg", "--batch-size", 5,
                      "--ig-steps", 8)
    assert "[" in p.stderr and "#" in p.stderr  # the progress bar
    ref = MambaLMReference.from_dir(model, dtype=torch.float64)
    f = ref(ids, attention_mask=mask)[:, -1, :].gather(1, labels[:, None])[:, 0]   # the label's logit
    for name, m in rep["methods"].items():
        c = {k: torch.tensor(v["mean"], dtype=torch.float64) for k, v in m["curves"].items()}
        # x = 0: the clean input for deletion; x = 1: every token flipped, whatever the order
        torch.testing.assert_close(c["morf"][0], f.mean(), msg=name)
        torch.testing.assert_close(c["lerf"][0], f.mean(), msg=name)
        torch.testing.assert_close(c["morf"][-1], c["lerf"][-1], msg=name)
        torch.testing.assert_close(c["insert_morf"][-1], f.mean(), msg=name)
        torch.testing.assert_close(c["insert_morf"][0], c["insert_lerf"][0], msg=name)
        torch.testing.assert_close(m["dA_F"]["mean"], m["area"]["lerf"]["mean"] - m["area"]["morf"]["mean"])
        torch.testing.assert_close(m["dA_I"]["mean"], m["area"]["insert_morf"]["mean"] - m["area"]["insert_lerf"]["mean"])
    # Figure 3 data: MambaLRP conserves (zero bias), GI does not.
    zb = ref.with_zero_bias()
    r, fz, _ = ref_explain(ref, ids, "mambalrp", target=labels, zero_bias=True, attention_mask=mask)
    cons = rep["conservation"]
    torch.testing.assert_close(torch.tensor(cons["mambalrp"]["logit"], dtype=torch.float64), fz)
    torch.testing.assert_close(torch.tensor(cons["mambalrp"]["relevance_sum"], dtype=torch.float64), fz,
                               rtol=1e-7, atol=1e-7)
    assert not torch.allclose(torch.tensor(cons["gi"]["relevance_sum"], dtype=torch.float64), fz, rtol=1e-3)
    del zb
    md = (tmp_path / "t.md").read_text()
    assert "| mambaattr |" in md and "ΔA^F" in md and "ΔA^I" in md
    svg = ET.parse(tmp_path / "p.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}polyline")) == 4 * 9
    assert len(svg.findall(f"{ns}circle")) == 2 * 4


def test_vim_patch_flipping(tmp_path):
    model = tmp_path / "vim"
    fixtures.write_vim_dir(model, seed=1)
    px = fixtures.random_pixels(3, seed=2)
    data = tmp_path / "px.safetensors"
    fixtures.write_inputs(data, pixel_values=px, labels=torch.tensor([0, 2, 1]))
    rep, _ = evaluate(model, data, "mambalrp,gi,random,smoothgrad,ig,attnroll,mambaattr", tmp_path, "--steps", 5,
                      "--baseline", "mean",
                      "--plot", tmp_path / "v.svg", "--noise", 0, "--samples", 2, "--ig-steps", 8, "--dtype", "float64")
    assert rep["unit"] == "patch" and rep["rows"] == 3
    for name, m in rep["methods"].items():
        c = {k: torch.tensor(v["mean"], dtype=torch.float64) for k, v in m["curves"].items()}
        torch.testing.assert_close(c["morf"][0], c["lerf"][0])
        torch.testing.assert_close(c["morf"][-1], c["lerf"][-1])
        # not packed: insertion of the most relevant = deletion of the least relevant, reversed
        torch.testing.assert_close(c["insert_morf"], c["lerf"].flip(0))
    # SmoothGrad without noise is GI on the tokens: the same order, the same curves.
    for k in rep["methods"]["gi"]["curves"]:
        assert rep["methods"]["smoothgrad"]["curves"][k] == pytest.approx(rep["methods"]["gi"]["curves"][k], rel=1e-9)
    cons = rep["conservation"]["mambalrp"]
    torch.testing.assert_close(torch.tensor(cons["relevance_sum"]), torch.tensor(cons["logit"]), rtol=1e-8, atol=1e-8)


BAD = [
    ("missing", None, "no such file"),
    ("garbage", b"not a safetensors file at all", ""),
    ("no_ids", {"pixel_values": torch.zeros(1, 3, 16, 16)}, "no tensor 'input_ids'"),
    ("float_ids", {"input_ids": torch.zeros(2, 4)}, "must be I64 or I32"),
    ("vocab", {"input_ids": torch.tensor([[1, 2, 64]])}, "outside the vocabulary"),
    ("mask_shape", {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)},
     "shape of input_ids"),
    ("mask_values", {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.full((2, 4), 2)},
     "only 0 and 1"),
    ("right_pad", {"input_ids": torch.ones(2, 4, dtype=torch.long),
                   "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}, "left padding"),
    ("labels_count", {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([0, 1, 1])},
     "one label per row"),
    ("labels_range", {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([0, 3])},
     "outside [0, 3)"),
    ("labels_float", {"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": torch.tensor([0.0, 1.0])},
     "I64 or I32"),
]


@pytest.mark.parametrize("name,content,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_data_exits_2(tmp_path, name, content, msg):
    model = tmp_path / "model"
    fixtures.write_hf_mamba_dir(model, {"num_labels": 3}, seed=4)
    data = tmp_path / f"{name}.safetensors"
    if isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        st_io.save_file(content, data)
    p = run("evaluate", "--model", model, "--data", data, "--methods", "gi", check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("mamba-lrp: ") and msg in p.stderr, p.stderr


@pytest.mark.parametrize("args,msg", [
    (["--methods", "gi,nope"], "unknown method 'nope'"),
    (["--methods", "gi,gi"], "given twice"),
    (["--methods", "gi", "--steps", "1"], "--steps"),
    (["--methods", "gi", "--baseline", "unk"], "names no unk token"),
    (["--methods", "gi", "--baseline", "99"], "outside the vocabulary"),
    (["--methods", "gi", "--frobnicate", "1"], "unknown option"),
])
def test_bad_options_exit_2(tmp_path, args, msg):
    model = tmp_path / "model"
    fixtures.write_hf_mamba_dir(model, {"num_labels": 3}, seed=4)
    data = tmp_path / "d.safetensors"
    fixtures.write_inputs(data, input_ids=torch.ones(1, 3, dtype=torch.long))
    p = run("evaluate", "--model", model, "--data", data, *args, check=False)
    assert p.returncode == 2 and msg in p.stderr, p.stderr


def test_vim_rejects_token_data_and_token_baselines(tmp_path):
    model = tmp_path / "vim"
    fixtures.write_vim_dir(model, seed=1)
    data = tmp_path / "ids.safetensors"
    fixtures.write_inputs(data, input_ids=torch.ones(1, 3, dtype=torch.long))
    p = run("evaluate", "--model", model, "--data", data, "--methods", "gi", check=False)
    assert p.returncode == 2 and "pixel_values" in p.stderr
    p = run("evaluate", "--model", model, "--data", data, "--methods", "gi", "--baseline", "unk", check=False)
    assert p.returncode == 2 and "zero or mean" in p.stderr
