"""Byte-level BPE training (GPT-2's byte alphabet and pre-tokenizer split) and writing the
result as a Hugging Face tokenizer.json that csrc/io/tokenizer.h (BpeTokenizer) and the
`tokenizers` library read. Used by scripts/make_demo_model.py and scripts/prepare_spam.py.

    vocab, merges = train_bpe(text, vocab_size)         # vocab: list of token strings, in id order
    tok = tokenizer_json(vocab, merges, ["<|endoftext|>", "<|pad|>"])  # special tokens appended
    encode = Encoder(vocab, merges)                      # encode(text) -> list of ids (no specials)
"""
import collections
import re


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


def _merge_word(w, a, b):
    out, i = [], 0
    while i < len(w):
        if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(w[i])
            i += 1
    return out


def train_bpe(text, vocab_size):
    """Merges learned greedily: the most frequent adjacent pair (ties: the larger pair in
    string order), until the vocabulary (256 byte symbols + merges) has vocab_size entries.
    Pair counts are updated incrementally, only in the words that hold the merged pair."""
    b2u = bytes_to_unicode()
    counted = collections.Counter(tuple(b2u[b] for b in w.encode("utf-8")) for w in SPLIT.findall(text))
    words = [list(w) for w in counted]
    freq = list(counted.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freq[i]
            where[p].add(i)
    vocab = sorted(set(b2u.values()))
    merges = []
    while len(vocab) < vocab_size and pairs:
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        for i in where.pop((a, b), ()):
            w, n = words[i], freq[i]
            for p in zip(w, w[1:]):
                pairs[p] -= n
                if pairs[p] <= 0:
                    del pairs[p]
            w = _merge_word(w, a, b)
            for p in zip(w, w[1:]):
                pairs[p] += n
                where[p].add(i)
            words[i] = w
    return vocab, merges


def tokenizer_json(vocab, merges, special_tokens=("<|endoftext|>",)):
    """A Hugging Face tokenizer.json (byte-level BPE, no normalizer or post-processor); the
    special tokens get the ids after the vocabulary, in order."""
    ids = {tok: i for i, tok in enumerate(vocab)}
    added = [{"id": len(ids) + k, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for k, t in enumerate(special_tokens)]
    return {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "vocab": ids, "merges": merges},
    }


class Encoder:
    """Text -> ids with the learned merges: each pre-token split mapped to the byte alphabet,
    then the pair of lowest merge rank merged (all its occurrences, left to right) until
    none is left, as the tokenizers library's BPE model does."""

    def __init__(self, vocab, merges):
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.cache = {}

    def _word(self, word):
        if word in self.cache:
            return self.cache[word]
        w = [self.b2u[b] for b in word.encode("utf-8")]
        while len(w) > 1:
            best = min(zip(w, w[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            w = _merge_word(w, *best)
        out = [self.ids[t] for t in w]
        self.cache[word] = out
        return out

    def __call__(self, text):
        return [i for word in SPLIT.findall(text) for i in self._word(word)]
