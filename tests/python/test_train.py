"""mamba-lrp train: a tiny synthetic task learned, the saved directories read back by the
loader, `explain` and the Python references, the first batch's gradients (exact scan rule)
equal to PyTorch autograd through the references, one Adam step equal to torch.optim.Adam,
the initialisation as Mamba's, and bad arguments / data refused with exit status 2."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import fixtures
import st_io
from hf_mamba_reference import MambaLMReference
from vim_reference import VimReference

from cli import BUILD, CLI, ROOT  # noqa: F401
from cli import run as _run


def run(*args):
    return _run(*args, check=False)

TINY = {"model_type": "mamba", "vocab_size": 16, "hidden_size": 16, "state_size": 4,
        "num_hidden_layers": 2, "num_labels": 2}


def token3_task(n, seed, length=12, vocab=16):
    """label 1 iff token 3 occurs among the real (unpadded) tokens; left padding with 0."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (n, length), generator=g)
    want = torch.rand(n, generator=g) < 0.5
    lens = torch.randint(4, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] >= (length - lens)[:, None]).long()
    for i in range(n):
        if want[i]:
            ids[i, length - 1 - torch.randint(0, int(lens[i]), (1,), generator=g)] = 3
    ids = ids * mask
    labels = ((ids == 3) & (mask == 1)).any(1).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    st_io.save_file(token3_task(384, 0), str(d / "train.safetensors"))
    st_io.save_file(token3_task(192, 1), str(d / "test.safetensors"))
    (d / "cfg.json").write_text(json.dumps(TINY))
    tok = fixtures_tokenizer(d)
    p = run("train", "--init", d / "cfg.json", "--data", d / "train.safetensors", "--test", d / "test.safetensors",
            "--out", d / "model", "--epochs", 10, "--lr", "1e-2", "--batch-size", 16, "--seed", 0, "--tokenizer", tok)
    assert p.returncode == 0, p.stderr
    return d, p.stdout


def fixtures_tokenizer(d):
    """A tokenizer.json over the 16 ids (one byte symbol each), to check it is copied."""
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    import bpe
    vocab = sorted(set(bpe.bytes_to_unicode().values()))[:15]
    path = d / "tok.json"
    path.write_text(json.dumps(bpe.tokenizer_json(vocab, [], ["<|endoftext|>"])))
    return path


def test_tiny_task_is_learned(trained):
    d, out = trained
    log = json.loads((d / "model" / "train_log.json").read_text())
    losses = [h["loss"] for h in log["history"]]
    assert len(losses) == 10 and "epoch 10/10" in out and "test_acc" in out
    assert losses[-1] < 0.5 * losses[0], losses
    assert log["test_accuracy"] > 0.8, log   # chance is about 0.5
    cfg = json.loads((d / "model" / "config.json").read_text())
    assert cfg["num_labels"] == 2 and cfg["tie_word_embeddings"] is False and cfg["model_type"] == "mamba"
    assert (d / "model" / "tokenizer.json").read_bytes() == (d / "tok.json").read_bytes()


def test_saved_model_matches_reference_and_explains(trained):
    d, _ = trained
    data = st_io.load_file(str(d / "test.safetensors"))
    ids, mask = data["input_ids"][:8], data["attention_mask"][:8]
    st_io.save_file({"input_ids": ids, "attention_mask": mask}, str(d / "in.safetensors"))
    p = run("forward", "--model", d / "model", "--input", d / "in.safetensors", "--output", d / "logits.safetensors")
    assert p.returncode == 0, p.stderr
    ours = st_io.load_file(str(d / "logits.safetensors"))["logits"]
    ref = MambaLMReference.from_dir(str(d / "model"))(ids, mask)
    assert ours.shape == (8, 12, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # The trained model explains, and the relevance conserves the logit (MambaLRP, no biases
    # missing beyond the model's own).
    p = run("explain", "--model", d / "model", "--ids", "5,3,7,9", "--json", "-")
    assert p.returncode == 0, p.stderr
    e = json.loads(p.stdout)["explanations"][0]
    assert len(e["relevance"]) == 4 and math.isfinite(e["relevance_sum"])
    # Training continues from a saved directory (--model).
    p = run("train", "--model", d / "model", "--data", d / "train.safetensors", "--out", d / "more",
            "--epochs", 1, "--quiet")
    assert p.returncode == 0, p.stderr
    assert (d / "more" / "tokenizer.json").exists()


def test_gradients_and_adam_step_match_pytorch(tmp_path):
    """float64: the first batch's gradients from the C++ trainer (selective_scan's exact
    backward) equal autograd through the pure-PyTorch reference on the same weights and
    batch, and the weights after that one Adam step equal torch.optim.Adam's."""
    fixtures.write_hf_mamba_dir(tmp_path / "init", {"num_labels": 3, "vocab_size": 16}, seed=3, dtype=torch.float64)
    data = token3_task(10, 5)
    data["labels"] = torch.arange(10) % 3
    st_io.save_file(data, str(tmp_path / "d.safetensors"))
    lr = 1e-3
    p = run("train", "--model", tmp_path / "init", "--data", tmp_path / "d.safetensors", "--out", tmp_path / "out",
            "--epochs", 1, "--batch-size", 10, "--lr", lr, "--dtype", "float64", "--quiet",
            "--dump-grads", tmp_path / "g.safetensors")
    assert p.returncode == 0, p.stderr
    dumped = st_io.load_file(str(tmp_path / "g.safetensors"))

    ref = MambaLMReference.from_dir(str(tmp_path / "init"), dtype=torch.float64)
    params = {k: v.requires_grad_() for k, v in ref.sd.items()}
    logits = ref(data["input_ids"], data["attention_mask"])[:, -1]
    loss = F.cross_entropy(logits, data["labels"])
    loss.backward()
    torch.testing.assert_close(dumped["loss"], loss.detach().reshape(1), rtol=1e-12, atol=1e-12)
    grads = {k[len("grad."):]: v for k, v in dumped.items() if k.startswith("grad.")}
    assert set(grads) == set(params)
    for k, v in params.items():
        torch.testing.assert_close(grads[k], v.grad, rtol=1e-8, atol=1e-10, msg=k)

    opt = torch.optim.Adam(list(params.values()), lr=lr)
    opt.step()
    saved = st_io.load_file(str(tmp_path / "out" / "model.safetensors"))
    for k, v in params.items():
        assert saved[k].dtype == torch.float64
        torch.testing.assert_close(saved[k], v.detach(), rtol=1e-9, atol=1e-9, msg=k)


def test_vim_trains_saves_and_matches_reference(tmp_path):
    """A tiny Vim (fixtures.VIM_SMALL) on a two-class image task (bright left half or right
    half): learned, saved, equal to the reference; its first gradients equal autograd's."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 16, 16, generator=g) * 0.3
    y = torch.arange(96) % 2
    x[y == 0, :, :, :8] += 1.0
    x[y == 1, :, :, 8:] += 1.0
    st_io.save_file({"pixel_values": x[:64], "labels": y[:64]}, str(tmp_path / "train.safetensors"))
    st_io.save_file({"pixel_values": x[64:], "labels": y[64:]}, str(tmp_path / "test.safetensors"))
    cfg = dict(fixtures.VIM_SMALL, num_classes=2)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    p = run("train", "--init", tmp_path / "cfg.json", "--data", tmp_path / "train.safetensors",
            "--test", tmp_path / "test.safetensors", "--out", tmp_path / "vim", "--epochs", 6, "--lr", "5e-3",
            "--batch-size", 16)
    assert p.returncode == 0, p.stderr
    log = json.loads((tmp_path / "vim" / "train_log.json").read_text())
    assert log["test_accuracy"] > 0.75, log
    ref = VimReference.from_dir(str(tmp_path / "vim"))
    st_io.save_file({"pixel_values": x[64:70]}, str(tmp_path / "px.safetensors"))
    p = run("explain", "--model", tmp_path / "vim", "--input", tmp_path / "px.safetensors",
            "--output", tmp_path / "rel.safetensors")
    assert p.returncode == 0, p.stderr
    assert st_io.load_file(str(tmp_path / "rel.safetensors"))  # something was written

    # Gradients of one batch in float64 against autograd through the Vim reference.
    fixtures.write_vim_dir(tmp_path / "vinit", {"num_classes": 2}, seed=1, dtype=torch.float64)
    p = run("train", "--model", tmp_path / "vinit", "--data", tmp_path / "test.safetensors", "--out",
            tmp_path / "vout", "--epochs", 1, "--batch-size", 32, "--dtype", "float64", "--quiet",
            "--dump-grads", tmp_path / "vg.safetensors")
    assert p.returncode == 0, p.stderr
    dumped = st_io.load_file(str(tmp_path / "vg.safetensors"))
    ref = VimReference.from_dir(str(tmp_path / "vinit"), dtype=torch.float64)
    params = {k: v.requires_grad_() for k, v in ref.sd.items()}
    loss = F.cross_entropy(ref(x[64:].double()), y[64:])
    loss.backward()
    torch.testing.assert_close(dumped["loss"], loss.detach().reshape(1), rtol=1e-12, atol=1e-12)
    for k, v in params.items():
        torch.testing.assert_close(dumped["grad." + k], v.grad, rtol=1e-8, atol=1e-10, msg=k)


def test_initialisation_is_mambas(tmp_path):
    """With a negligible learning rate the saved weights are the initialisation."""
    cfg = dict(TINY, hidden_size=32, state_size=8, vocab_size=64)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    data = token3_task(8, 2)
    st_io.save_file(data, str(tmp_path / "d.safetensors"))
    p = run("train", "--init", tmp_path / "cfg.json", "--data", tmp_path / "d.safetensors", "--out", tmp_path / "m",
            "--epochs", 1, "--lr", "1e-12", "--batch-size", 8, "--quiet")
    assert p.returncode == 0, p.stderr
    sd = st_io.load_file(str(tmp_path / "m" / "model.safetensors"))
    m = "backbone.layers.0.mixer."
    torch.testing.assert_close(sd[m + "A_log"], torch.log(torch.arange(1.0, 9.0)).repeat(64, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(sd[m + "D"], torch.ones(64), rtol=0, atol=1e-6)
    dt = F.softplus(sd[m + "dt_proj.bias"])
    assert dt.min() >= 1e-3 * 0.99 and dt.max() <= 0.1 * 1.01
    assert sd[m + "dt_proj.weight"].abs().max() <= 2 ** -0.5 + 1e-6   # rank auto = 2
    assert sd[m + "in_proj.weight"].abs().max() <= 32 ** -0.5 + 1e-6
    assert sd[m + "conv1d.weight"].abs().max() <= 0.5 + 1e-6
    assert 0.015 < sd["backbone.embeddings.weight"].std() < 0.025
    torch.testing.assert_close(sd["backbone.norm_f.weight"], torch.ones(32), rtol=0, atol=1e-6)
    assert sd["lm_head.weight"].shape == (2, 32)
    # Same seed, same model; another seed, another.
    run("train", "--init", tmp_path / "cfg.json", "--data", tmp_path / "d.safetensors", "--out", tmp_path / "m2",
        "--epochs", 1, "--lr", "1e-12", "--batch-size", 8, "--quiet")
    assert st_io.load_file(str(tmp_path / "m2" / "model.safetensors"))[m + "x_proj.weight"].equal(sd[m + "x_proj.weight"])
    run("train", "--init", tmp_path / "cfg.json", "--data", tmp_path / "d.safetensors", "--out", tmp_path / "m3",
        "--epochs", 1, "--lr", "1e-12", "--batch-size", 8, "--quiet", "--seed", 1)
    assert not st_io.load_file(str(tmp_path / "m3" / "model.safetensors"))[m + "x_proj.weight"].equal(sd[m + "x_proj.weight"])


def test_bad_arguments_and_data_exit_2(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps(TINY))
    (tmp_path / "nolabels.json").write_text(json.dumps({k: v for k, v in TINY.items() if k != "num_labels"}))
    good = token3_task(8, 0)
    st_io.save_file(good, str(tmp_path / "d.safetensors"))
    st_io.save_file(dict(good, labels=good["labels"] + 5), str(tmp_path / "badlabels.safetensors"))
    st_io.save_file(dict(good, input_ids=good["input_ids"] + 16), str(tmp_path / "badids.safetensors"))
    right = good["attention_mask"].flip(1)
    st_io.save_file(dict(good, attention_mask=right), str(tmp_path / "rightpad.safetensors"))
    st_io.save_file({"input_ids": good["input_ids"]}, str(tmp_path / "nolab.safetensors"))
    st_io.save_file(dict(good, labels=good["labels"].int()), str(tmp_path / "int32.safetensors"))
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "d.safetensors").read_bytes()[:50])
    c, d, o = tmp_path / "cfg.json", tmp_path / "d.safetensors", tmp_path / "out"
    cases = {
        "no --data": ["--init", c, "--out", o],
        "no --out": ["--init", c, "--data", d],
        "both --init and --model": ["--init", c, "--model", tmp_path, "--data", d, "--out", o],
        "unknown option": ["--init", c, "--data", d, "--out", o, "--frobnicate", 1],
        "--epochs 0": ["--init", c, "--data", d, "--out", o, "--epochs", 0],
        "--lr text": ["--init", c, "--data", d, "--out", o, "--lr", "fast"],
        "--lr negative": ["--init", c, "--data", d, "--out", o, "--lr", "-1"],
        "--batch-size 0": ["--init", c, "--data", d, "--out", o, "--batch-size", 0],
        "--dtype": ["--init", c, "--data", d, "--out", o, "--dtype", "float16"],
        "missing data file": ["--init", c, "--data", tmp_path / "none.safetensors", "--out", o],
        "truncated data file": ["--init", c, "--data", tmp_path / "trunc.safetensors", "--out", o],
        "config without num_labels": ["--init", tmp_path / "nolabels.json", "--data", d, "--out", o],
        "labels out of range": ["--init", c, "--data", tmp_path / "badlabels.safetensors", "--out", o],
        "ids out of range": ["--init", c, "--data", tmp_path / "badids.safetensors", "--out", o],
        "right padding": ["--init", c, "--data", tmp_path / "rightpad.safetensors", "--out", o],
        "no labels": ["--init", c, "--data", tmp_path / "nolab.safetensors", "--out", o],
        "int32 labels": ["--init", c, "--data", tmp_path / "int32.safetensors", "--out", o],
        "missing tokenizer": ["--init", c, "--data", d, "--out", o, "--tokenizer", tmp_path / "none.json"],
    }
    for what, args in cases.items():
        p = run("train", *args)
        assert p.returncode == 2, (what, p.returncode, p.stderr)
        assert p.stderr.startswith("mamba-lrp: ") and len(p.stderr.strip().splitlines()) == 1, (what, p.stderr)
    assert not o.exists()
    # A language model (head = vocabulary) is not a classifier to train.
    fixtures.write_hf_mamba_dir(tmp_path / "lm")
    p = run("train", "--model", tmp_path / "lm", "--data", d, "--out", o)
    assert p.returncode == 2 and "not a classifier" in p.stderr, p.stderr
