"""Builds the demo model that scripts/setup.sh explains: a byte-level BPE tokenizer trained
here on the project's own documentation (Hugging Face tokenizer.json format, as GPT-NeoX /
Mamba use it) and a small Mamba language model with seeded random weights in Hugging Face
format. Nothing is downloaded. The weights are random: the demo shows the mechanics of an
explanation (and its conservation), not learned meaning.

usage: make_demo_model.py OUT_DIR [--vocab 600]
"""
import argparse
import collections
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapped = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            mapped.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, mapped)}


# GPT-2's split, with ASCII classes (the training text is ASCII-dominated).
SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def train_bpe(text, vocab_size):
    b2u = bytes_to_unicode()
    words = collections.Counter(tuple(b2u[b] for b in w.encode("utf-8")) for w in SPLIT.findall(text))
    vocab = sorted(set(b2u.values()))
    merges = []
    while len(vocab) < vocab_size:
        pairs = collections.Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        new_words = collections.Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    return vocab, merges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=600)
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        return
    text = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "csrc").glob("*.h"))])
    vocab, merges = train_bpe(text, a.vocab - 1)
    ids = {tok: i for i, tok in enumerate(vocab)}
    eot = len(ids)
    tokenizer = {
        "version": "1.0",
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "vocab": ids, "merges": merges},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    import fixtures
    fixtures.write_hf_mamba_dir(out, {"vocab_size": eot + 1, "hidden_size": 64, "num_hidden_layers": 2,
                                      "state_size": 16}, seed=2024)
    print(f"demo model: {out} (vocab {eot + 1}, {len(merges)} merges, 2 layers, d_model 64, random weights)")


if __name__ == "__main__":
    main()
