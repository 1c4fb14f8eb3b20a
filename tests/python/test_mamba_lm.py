"""The C++ Mamba language model and the mamba-lrp command line against the independent
pure-PyTorch reference (hf_mamba_reference.py) and the official code's golden numbers."""
import json
import re
import os
import pathlib
import struct
import subprocess

import pytest
import torch

import fixtures
import st_io
from hf_mamba_reference import MambaLMReference, explain as ref_explain

from cli import BUILD, CLI, ROOT, cpp_logits, explain_json, run  # noqa: F401
GOLDEN = pathlib.Path(os.environ.get("MAMBA_LRP_GOLDEN", ROOT / "tests" / "golden"))
METHODS = ["mambalrp", "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate"]
REF_MODE = {"gi": "standard"}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_small")
    fixtures.write_hf_mamba_dir(d, seed=1)
    return d


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    p = tmp_path_factory.mktemp("inputs") / "ids.safetensors"
    ids = fixtures.random_ids(3, 13, 64, seed=4)
    fixtures.write_inputs(p, input_ids=ids)
    return p, ids


# ---- forward --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_forward_equals_reference(small_model, small_inputs, tmp_path, dtype, rtol):
    path, ids = small_inputs
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    ours = cpp_logits(small_model, path, dtype, tmp_path)
    ref = MambaLMReference.from_dir(small_model, dtype=tdtype)(ids)
    assert ours.dtype == tdtype and ours.shape == ref.shape
    err = ((ours - ref).abs().max() / ref.abs().max()).item()
    assert err < rtol, err


@pytest.mark.parametrize("variant", ["untied_bias", "classifier", "state_spaces", "sharded", "float16_weights"])
def test_model_variants_forward(tmp_path, variant):
    kw = {}
    over = {}
    if variant == "untied_bias":
        over = {"tie_word_embeddings": False, "use_bias": True, "time_step_rank": 3, "state_size": 17}
    elif variant == "classifier":
        over = {"num_labels": 2}
    elif variant == "state_spaces":
        kw = {"state_spaces": True}
    elif variant == "sharded":
        kw = {"shards": 3}
    elif variant == "float16_weights":
        kw = {"dtype": torch.float16}
    d = tmp_path / "m"
    fixtures.write_hf_mamba_dir(d, over, seed=2, **kw)
    ids = fixtures.random_ids(2, 9, 64, seed=3)
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids)
    ours = cpp_logits(d, tmp_path / "ids.safetensors", "float64", tmp_path)
    ref = MambaLMReference.from_dir(d, dtype=torch.float64)(ids)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# ---- relevance ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_relevance_equals_reference(small_model, small_inputs, method):
    path, ids = small_inputs
    out = explain_json(small_model, path, method)
    assert out["model_type"] == "mamba" and out["method"] == method
    model = MambaLMReference.from_dir(small_model, dtype=torch.float64)
    R, f, targets = ref_explain(model, ids, REF_MODE.get(method, method))
    ours = torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64)
    assert [e["target"] for e in out["explanations"]] == targets.tolist()
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]], dtype=torch.float64), f,
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    for e, r in zip(out["explanations"], ours):
        assert e["position"] == ids.shape[1] - 1
        assert abs(e["relevance_sum"] - r.sum().item()) < 1e-9


def test_target_and_position(small_model, small_inputs):
    path, ids = small_inputs
    out = explain_json(small_model, path, extra=("--target", "7", "--position", "5"))
    R, f, _ = ref_explain(MambaLMReference.from_dir(small_model, dtype=torch.float64), ids, "mambalrp", target=7,
                          position=5)
    ours = torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64)
    torch.testing.assert_close(ours, R, rtol=1e-9, atol=1e-12)
    assert all(e["target"] == 7 and e["position"] == 5 for e in out["explanations"])
    # tokens after the position get no relevance (causal model)
    assert ours[:, 6:].abs().max().item() == 0.0


def test_composite_gamma(small_model, small_inputs, tmp_path):
    path, ids = small_inputs
    comp = {"conv1d": {"rule": "gamma", "gamma": 0.25}, "out_proj": {"rule": "epsilon", "epsilon": 1e-3}}
    (tmp_path / "c.json").write_text(json.dumps(comp))
    out = explain_json(small_model, path, extra=("--composite", tmp_path / "c.json"))
    R, _, _ = ref_explain(MambaLMReference.from_dir(small_model, dtype=torch.float64), ids, "mambalrp",
                          composite=comp)
    ours = torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64)
    torch.testing.assert_close(ours, R, rtol=1e-9, atol=1e-12)


def test_conservation_with_zero_bias(small_model, small_inputs):
    path, _ = small_inputs
    for method, conserved in [("mambalrp", True), ("gi", False)]:
        out = explain_json(small_model, path, method, extra=("--zero-bias",))
        for e in out["explanations"]:
            gap = abs(e["relevance_sum"] - e["logit"])
            if conserved:
                assert gap <= 1e-8 * max(1.0, abs(e["logit"])), (method, gap)
            else:
                assert gap > 1e-3 * max(1.0, abs(e["logit"])), (method, gap)  # GI is visibly off


def test_batch_rows_are_independent(small_model, small_inputs, tmp_path):
    path, ids = small_inputs
    batch = explain_json(small_model, path)["explanations"]
    for b in range(ids.shape[0]):
        fixtures.write_inputs(tmp_path / "one.safetensors", input_ids=ids[b])
        one = explain_json(small_model, tmp_path / "one.safetensors")["explanations"][0]
        torch.testing.assert_close(torch.tensor(one["relevance"]), torch.tensor(batch[b]["relevance"]), rtol=1e-12,
                                   atol=1e-13)


def test_left_padding_with_attention_mask(small_model, tmp_path):
    ids = fixtures.random_ids(1, 8, 64, seed=9)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.int64), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.int64), torch.ones(1, 8, dtype=torch.int64)], dim=1)
    batch_ids = torch.cat([padded, fixtures.random_ids(1, 11, 64, seed=10)])
    batch_mask = torch.cat([mask, torch.ones(1, 11, dtype=torch.int64)])
    fixtures.write_inputs(tmp_path / "pad.safetensors", input_ids=batch_ids, attention_mask=batch_mask)
    fixtures.write_inputs(tmp_path / "one.safetensors", input_ids=ids)
    pad = explain_json(small_model, tmp_path / "pad.safetensors")["explanations"][0]
    one = explain_json(small_model, tmp_path / "one.safetensors")["explanations"][0]
    assert pad["relevance"][:3] == [0.0, 0.0, 0.0]
    torch.testing.assert_close(torch.tensor(pad["relevance"][3:]), torch.tensor(one["relevance"]), rtol=1e-9,
                               atol=1e-12)
    R, _, _ = ref_explain(MambaLMReference.from_dir(small_model, dtype=torch.float64), batch_ids, "mambalrp",
                          attention_mask=batch_mask)
    out = explain_json(small_model, tmp_path / "pad.safetensors")["explanations"]
    torch.testing.assert_close(torch.tensor([e["relevance"] for e in out], dtype=torch.float64), R, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("recompute", ["on", "off"])
def test_recompute_keeps_the_relevance(small_model, tmp_path, recompute):
    """--recompute on keeps only each SSM branch's inputs and recomputes the rest in the
    backward (models/ssm_branch.cpp); off keeps everything. Both must equal the reference,
    left padding included."""
    ids = torch.cat([fixtures.random_ids(1, 9, 64, seed=21), fixtures.random_ids(1, 9, 64, seed=22)])
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[0, :4] = 0
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids, attention_mask=mask)
    # Without a mask the recompute node takes its one-kernel path (the conv output into the scan).
    fixtures.write_inputs(tmp_path / "nomask.safetensors", input_ids=ids)
    for inputs, m in (("ids.safetensors", mask), ("nomask.safetensors", None)):
        for method in ("mambalrp", "mambalrp-no-gate"):
            out = explain_json(small_model, tmp_path / inputs, method, extra=("--recompute", recompute))
            R, _, _ = ref_explain(MambaLMReference.from_dir(small_model, dtype=torch.float64), ids,
                                  REF_MODE.get(method, method), attention_mask=m)
            ours = torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64)
            torch.testing.assert_close(ours, R, rtol=1e-9, atol=1e-9 * R.abs().max().item())


# ---- golden numbers of the official implementation --------------------------------------------

@pytest.mark.skipif(not (GOLDEN / "mamba-lm").exists(), reason="golden files not found")
@pytest.mark.parametrize("method,key", [("mambalrp", "relevance_mambalrp"), ("gi", "relevance_gi")])
def test_golden_official_relevance(tmp_path, method, key):
    exp = st_io.load_file(GOLDEN / "mamba-lm" / "expected.safetensors")
    ids = exp["input_ids"].to(torch.int64)
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=ids)
    out = explain_json(GOLDEN / "mamba-lm", tmp_path / "ids.safetensors", method, dtype="float32")
    ours = torch.tensor([e["relevance"] for e in out["explanations"]])
    assert [e["target"] for e in out["explanations"]] == exp["target"].to(torch.int64).tolist()
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]]), exp["output_f"], rtol=1e-5,
                               atol=1e-4)
    # The official code's SiLU ratio carries a 1e-6 stabiliser: agreement to ~1e-5 of max |R|.
    err = ((ours - exp[key]).abs().max() / exp[key].abs().max()).item()
    assert err < 1e-5, err
    logits = cpp_logits(GOLDEN / "mamba-lm", tmp_path / "ids.safetensors", "float32", tmp_path)
    torch.testing.assert_close(logits, exp["logits"], rtol=1e-5, atol=1e-4)


# ---- bad input: exit 2 with a one-line reason --------------------------------------------------

def _corrupt(src, dst, fn):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    fn(dst)
    return dst


def _rewrite_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _truncate(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) - 100])


def _header_len_huge(d):
    data = bytearray((d / "model.safetensors").read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 4)
    (d / "model.safetensors").write_bytes(bytes(data))


def _drop_tensor(d, name="backbone.norm_f.weight"):
    sd = st_io.load_file(d / "model.safetensors")
    del sd[name]
    st_io.save_file(sd, d / "model.safetensors")


def _extra_tensor(d):
    sd = st_io.load_file(d / "model.safetensors")
    sd["backbone.surprise.weight"] = torch.zeros(2)
    st_io.save_file(sd, d / "model.safetensors")


def _wrong_shape(d):
    sd = st_io.load_file(d / "model.safetensors")
    sd["backbone.layers.0.mixer.D"] = torch.zeros(5)
    st_io.save_file(sd, d / "model.safetensors")


@pytest.mark.parametrize("name,corrupt,words", [
    ("truncated", _truncate, ["model.safetensors"]),
    ("header", _header_len_huge, ["model.safetensors", "header"]),
    ("missing", _drop_tensor, ["model.safetensors", "missing", "backbone.norm_f.weight"]),
    ("unexpected", _extra_tensor, ["unexpected", "backbone.surprise.weight"]),
    ("shape", _wrong_shape, ["backbone.layers.0.mixer.D", "shape"]),
    ("config_json", lambda d: (d / "config.json").write_text("{not json"), ["config.json", "JSON"]),
    ("config_value", lambda d: _rewrite_config(d, hidden_size=-4), ["config.json", "hidden_size"]),
    ("config_act", lambda d: _rewrite_config(d, hidden_act="gelu"), ["config.json", "hidden_act"]),
])
def test_bad_checkpoints_exit_2(small_model, tmp_path, name, corrupt, words):
    d = _corrupt(small_model, tmp_path / name, corrupt)
    p = run("explain", "--model", d, "--ids", "1,2,3", check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("mamba-lrp: ")
    for w in words:
        assert w in p.stderr, (w, p.stderr)


@pytest.mark.parametrize("args,words", [
    (["--ids", "1,2,64"], ["64", "vocabulary"]),
    (["--ids", "1,-2"], ["-2", "vocabulary"]),
    (["--ids", ""], ["--ids"]),
    (["--ids", "1,x"], ["--ids", "integer"]),
    (["--ids", "1,2", "--target", "64"], ["target 64", "out of range"]),
    (["--ids", "1,2", "--position", "2"], ["position 2", "out of range"]),
    (["--ids", "1,2", "--position", "-3"], ["position -3"]),
    (["--ids", "1,2", "--method", "lrp"], ["unknown method 'lrp'"]),
    (["--ids", "1,2", "--dtype", "float16"], ["--dtype"]),
    (["--ids", "1,2", "--bogus", "1"], ["unknown option '--bogus'"]),
    (["--ids", "1,2", "--recompute", "yes"], ["recompute", "'yes'"]),
    (["--text", "hello"], ["tokenizer.json"]),
    ([], ["exactly one of"]),
])
def test_bad_arguments_exit_2(small_model, args, words):
    p = run("explain", "--model", small_model, *args, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_bad_input_files_exit_2(small_model, tmp_path):
    fixtures.write_inputs(tmp_path / "empty.safetensors", input_ids=torch.zeros(1, 0, dtype=torch.int64))
    fixtures.write_inputs(tmp_path / "float.safetensors", input_ids=torch.zeros(1, 3))
    fixtures.write_inputs(tmp_path / "none.safetensors", pixel_values=torch.zeros(1, 3, 2, 2))
    (tmp_path / "junk.safetensors").write_bytes(b"\x01\x02")
    for f, word in [("empty", "empty"), ("float", "I64 or I32"), ("none", "input_ids"), ("junk", "junk.safetensors")]:
        p = run("explain", "--model", small_model, "--input", tmp_path / f"{f}.safetensors", check=False)
        assert p.returncode == 2 and word in p.stderr, (f, p.returncode, p.stderr)
    p = run("explain", "--model", tmp_path / "nowhere", "--ids", "1", check=False)
    assert p.returncode == 2 and "nowhere" in p.stderr


# ---- the usage: mamba-lrp alone, --help, CMD --help -----------------------------------------

COMMANDS = ["explain", "forward", "evaluate", "train", "generate"]


def _usage_commands(text):
    """The commands a usage text shows: the words after 'mamba-lrp ' at the start of its lines."""
    return {m.group(1) for m in re.finditer(r"^(?:usage:)? *mamba-lrp ([a-z]+)\b", text, re.M)}


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], ["help"]])
def test_usage_names_every_command(args):
    p = run(*args, check=False)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    assert p.stderr == "" and p.stdout.startswith("usage: mamba-lrp "), (args, p.stdout, p.stderr)
    assert _usage_commands(p.stdout) == set(COMMANDS), p.stdout  # each answers --help: the next test


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_prints_that_commands_usage(small_model, command):
    for args in [[command, "--help"], [command, "-h"], ["help", command],
                 [command, "--model", small_model, "--ids", "1,2", "--help"]]:
        p = run(*args, check=False)
        assert p.returncode == 0, (args, p.returncode, p.stderr)
        assert p.stderr == "" and p.stdout.startswith(f"usage: mamba-lrp {command} "), (args, p.stdout, p.stderr)
        assert _usage_commands(p.stdout) == {command}, (args, p.stdout)
        assert "unknown option" not in p.stdout + p.stderr


def test_unknown_command_exit_2():
    for args in [["frobnicate"], ["frobnicate", "--help"], ["help", "frobnicate"]]:
        p = run(*args, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stdout == "" and p.stderr == "mamba-lrp: unknown command 'frobnicate'\n", (args, p.stderr)


# ---- --text with the model's tokenizer.json, and the HTML page -------------------------------

@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    subprocess.run(["/usr/bin/python3", str(ROOT / "scripts" / "make_demo_model.py"), str(d), "--vocab", "320"],
                   check=True, capture_output=True)
    return d


def test_text_input_uses_the_tokenizer_and_writes_html(demo_model, tmp_path):
    import html.parser
    text = 'Mamba <models> & "tokens"'
    html_path = tmp_path / "out.html"
    p = run("explain", "--model", demo_model, "--text", text, "--json", tmp_path / "out.json", "--html", html_path,
            "--dtype", "float64", "--zero-bias")
    out = json.loads((tmp_path / "out.json").read_text())["explanations"][0]
    tok = json.loads((demo_model / "tokenizer.json").read_text())
    assert len(out["relevance"]) >= 5
    assert abs(out["relevance_sum"] - out["logit"]) < 1e-8 * max(1, abs(out["logit"]))
    assert "most relevant tokens" in p.stdout

    class Spans(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.spans, self.texts, self.inside = [], [], False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "span" and a.get("class") == "tok":
                self.spans.append(a)
                self.inside = True
                self.texts.append("")

        def handle_endtag(self, tag):
            self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.texts[-1] += data

    parser = Spans()
    parser.feed(html_path.read_text(encoding="utf-8"))
    # one span per token, whose text joins back to the input, with its relevance and colour
    assert len(parser.spans) == len(out["relevance"])
    assert "".join(parser.texts) == text
    vmax = max(abs(r) for r in out["relevance"])
    for span, r in zip(parser.spans, out["relevance"]):
        assert abs(float(span["data-relevance"]) - r) <= 1e-5 * max(1.0, abs(r))
        rgb = [int(v) for v in re.findall(r"\d+", span["style"])]
        if r > 0.05 * vmax:
            assert rgb[0] == 255 and rgb[2] < 255  # red
        elif r < -0.05 * vmax:
            assert rgb[2] == 255 and rgb[0] < 255  # blue
    page = html_path.read_text(encoding="utf-8")
    assert "<models" not in page and "&lt;" in page and "&amp;" in page  # escaped, not markup
