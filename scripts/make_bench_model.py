"""Writes a Mamba-130M-shaped model with random weights as a Hugging Face directory
(24 layers, d_model 768, vocab 50280, d_state 16) for the benchmarks.

With --mamba2: a Mamba-2 130M-shaped one (Hugging Face mamba2 directory: head_dim 64,
d_state 128, expand 2, n_groups 1, so 24 heads of 64 channels).

usage: make_bench_model.py OUT_DIR [--layers 24] [--hidden 768] [--vocab 50280] [--mamba2]
"""
import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
import fixtures  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50280)
    ap.add_argument("--mamba2", action="store_true")
    a = ap.parse_args()
    if (pathlib.Path(a.out) / "model.safetensors").exists():
        return
    if a.mamba2:
        fixtures.write_mamba2_dir(a.out, {"num_hidden_layers": a.layers, "hidden_size": a.hidden, "vocab_size": a.vocab,
                                          "state_size": 128, "head_dim": 64, "num_heads": 2 * a.hidden // 64,
                                          "n_groups": 1, "chunk_size": 256}, seed=0)
        print(f"wrote {a.out}: {os.path.getsize(os.path.join(a.out, 'model.safetensors')) / 1e6:.0f} MB")
        return
    fixtures.write_hf_mamba_dir(a.out, {"num_hidden_layers": a.layers, "hidden_size": a.hidden, "vocab_size": a.vocab,
                                        "state_size": 16}, seed=0)
    print(f"wrote {a.out}: {os.path.getsize(os.path.join(a.out, 'model.safetensors')) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
