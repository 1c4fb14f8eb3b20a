"""Builds the demo model that scripts/setup.sh explains: a byte-level BPE tokenizer trained
here on the project's own documentation (Hugging Face tokenizer.json format, as GPT-NeoX /
Mamba use it) and a small Mamba language model with seeded random weights in Hugging Face
format. Nothing is downloaded. The weights are random: the demo shows the mechanics of an
explanation (and its conservation), not learned meaning.

usage: make_demo_model.py OUT_DIR [--vocab 600]
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "scripts"))

from bpe import tokenizer_json, train_bpe  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=600)
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        return
    text = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "csrc").rglob("*.h"))])
    vocab, merges = train_bpe(text, a.vocab - 1)
    eot = len(vocab)
    tokenizer = tokenizer_json(vocab, merges, ["<|endoftext|>"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    import fixtures
    fixtures.write_hf_mamba_dir(out, {"vocab_size": eot + 1, "hidden_size": 64, "num_hidden_layers": 2,
                                      "state_size": 16}, seed=2024)
    print(f"demo model: {out} (vocab {eot + 1}, {len(merges)} merges, 2 layers, d_model 64, random weights)")


if __name__ == "__main__":
    main()
