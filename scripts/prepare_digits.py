"""scikit-learn's digits (the UCI optical handwritten digits test set bundled with
scikit-learn: 1797 grey images of 8x8 pixels with values 0..16, 10 classes; read from the
installed package by sklearn.datasets.load_digits, nothing is downloaded; Debian:
python3-sklearn) -> image classification data for `mamba-lrp train` and a small Vim.

The images stay 8x8 (a Vim with patch 2 sees a 4x4 grid of patches); the grey value is
scaled to [0, 1], replicated to 3 channels (the Vim tools read RGB) and normalised with the
training split's mean and standard deviation (written to OUT/normalization.json so that a
Vim config can carry them as "mean"/"std"). The split is fixed: a stratified 80/20 split,
per class a permutation from numpy's RandomState(0), the first 20% of each class to test.

Writes OUT/{train,test}.safetensors with pixel_values (B, 3, 8, 8) float32 and labels (B)
int64.

usage: prepare_digits.py [--out build/data/digits]
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import st_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "build/data/digits"))
    a = ap.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("prepare_digits: scikit-learn is missing (Debian: apt-get install python3-sklearn)")
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0        # (N, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)                  # (N)
    rng = np.random.RandomState(0)
    test_idx, train_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(0.2 * len(idx)))
        test_idx.extend(idx[:n_test])
        train_idx.extend(idx[n_test:])
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std())
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"source": "sklearn.datasets.load_digits", "split": "stratified 80/20, numpy RandomState(0)",
            "normalization": f"(x / 16 - {mean:.6f}) / {std:.6f}, grey replicated to 3 channels"}
    for name, idx in (("train", train_idx), ("test", test_idx)):
        x = torch.from_numpy((images[idx] - mean) / std)[:, None].repeat(1, 3, 1, 1).contiguous()  # (B, 3, 8, 8)
        y = torch.from_numpy(labels[idx])
        st_io.save_file({"pixel_values": x, "labels": y}, str(out / f"{name}.safetensors"),
                        metadata=dict(meta, split_name=name))
        print(f"digits/{name}: {len(idx)} images of 8x8, 10 classes")
    (out / "normalization.json").write_text(json.dumps({"mean": [mean] * 3, "std": [std] * 3}) + "\n")


if __name__ == "__main__":
    main()
