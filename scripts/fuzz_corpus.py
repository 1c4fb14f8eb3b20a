#!/usr/bin/env python3
"""Writes the fuzzers' inputs: `seeds DIR` writes valid seed inputs per target under
DIR/<target>/; `regressions` (re)writes the hostile files of issue 14 into
tests/fuzz/regressions/<target>/, which ctest replays (fuzz_regressions_<target>); inputs a
fuzzer finds later are added there by hand (scripts/fuzz.sh says where they are). Plain Python (PIL, when present,
adds JPEG seeds); every file is built byte by byte here.

    python3 scripts/fuzz_corpus.py seeds build-sanitize/fuzz/seeds
    python3 scripts/fuzz_corpus.py regressions
"""
import io
import json
import pathlib
import struct
import sys
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---- safetensors -------------------------------------------------------------------------
def safetensors(header, data=b""):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def st_two(a, b, data_len=16):
    return safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": a},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": b}}, bytes(data_len))


# ---- torch.save, legacy format, by hand (pickle protocol 2) ------------------------------
def p_str(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def p_int(v):
    return b"J" + struct.pack("<i", v)


def p_global(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


PROTO = b"\x80\x02"
MAGIC = PROTO + b"\x8a\x0a" + bytes([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) + b"."


def legacy_checkpoint(count, offset, size, stride):
    tup = lambda xs: b"(" + b"".join(p_int(x) for x in xs) + b"t"
    storage = b"(" + p_str("storage") + p_global("torch", "FloatStorage") + p_str("0") + p_str("cpu") + p_int(count) + b"tQ"
    tensor = (p_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + p_int(offset) + tup(size) + tup(stride) +
              b"\x89}tR")
    obj = PROTO + b"}(" + p_str("w") + tensor + b"u."
    keys = PROTO + b"(" + p_str("0") + b"l."
    return MAGIC + PROTO + p_int(1001) + b"." + PROTO + b"}." + obj + keys + struct.pack("<q", count) + \
        struct.pack("<f", 1.0) * count


# ---- PNG, by hand ------------------------------------------------------------------------
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, colour_type, rows):
    """rows: raw scanlines (filter byte 0 is added)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + \
        png_chunk(b"IEND", b"")


def png_header_only(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"") + png_chunk(b"IEND", b"")


def tokenizer(edit=None, text="ab ab<s>"):
    j = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4, "\u0120ab": 5},
                   "merges": ["a b", "\u0120 a", "\u0120a b"]},
         "added_tokens": [{"id": 6, "content": "<s>", "special": True}],
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}
    if edit:
        edit(j)
    return json.dumps(j).encode() + b"\x00" + text.encode()


def args(*words):
    return b"\x00".join(w.encode() if isinstance(w, str) else w for w in words)


MAMBA_HF = {"model_type": "mamba", "vocab_size": 64, "hidden_size": 32, "state_size": 8, "num_hidden_layers": 2,
            "expand": 2, "conv_kernel": 4, "time_step_rank": "auto"}
MAMBA_SS = {"d_model": 32, "n_layer": 2, "vocab_size": 50, "pad_vocab_size_multiple": 8, "ssm_cfg": {"d_state": 8}}
VIM = {"model_type": "vim", "img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_classes": 5,
       "ssm_cfg": {"d_conv": 4, "expand": 2}, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}


def seeds():
    rgb = [bytes((x * 7 + y * 13 + c * 50) % 256 for x in range(12) for c in range(3)) for y in range(9)]
    out = {
        "safetensors": {"two.safetensors": st_two([0, 8], [8, 16]),
                        "meta.safetensors": safetensors({"__metadata__": {"format": "pt"},
                                                         "x": {"dtype": "I64", "shape": [1, 1], "data_offsets": [0, 8]}},
                                                        bytes(8))},
        "torch_save": {"legacy.pth": legacy_checkpoint(4, 1, [3], [1]), "matrix.pth": legacy_checkpoint(6, 0, [2, 3], [3, 1])},
        "config": {"mamba_hf.json": json.dumps(MAMBA_HF).encode(), "mamba_ss.json": json.dumps(MAMBA_SS).encode(),
                   "vim.json": json.dumps(VIM).encode()},
        "tokenizer": {"small.bin": tokenizer(), "text_only.bin": "ab <s>b a\u00e9".encode()},
        "image": {"rgb.png": png(12, 9, 2, rgb),
                  "grey.png": png(5, 7, 0, [bytes(range(y * 5, y * 5 + 5)) for y in range(7)]),
                  "rgba.png": png(3, 2, 6, [bytes(range(12)), bytes(range(12, 24))])},
        "composite": {p.name: p.read_bytes() for p in sorted((ROOT / "configs" / "composites").glob("*.json"))},
        "cli_args": {"explain.bin": args("explain", "--model", "m", "--ids", "1,2,3", "--target", "5", "--zero-bias"),
                     "vim.bin": args("explain", "--model", "v", "--image", "x.png", "--no-resize", "--samples", "8",
                                     "--noise", "0.1")},
    }
    try:  # JPEG seeds when PIL is there (python3-pil)
        from PIL import Image
        for name, mode, kw in [("rgb.jpg", "RGB", {}), ("grey.jpg", "L", {}), ("progressive.jpg", "RGB", {"progressive": True})]:
            img = Image.new(mode, (17, 11))
            img.putdata([((x * 15) % 256, (y * 23) % 256, 128)[:len(mode)] if mode == "RGB" else (x * y) % 256
                         for y in range(11) for x in range(17)])
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80, **kw)
            out["image"][name] = buf.getvalue()
    except ImportError:
        pass
    return out


def regressions():
    """The hostile inputs of issue 14, one file each, named after what they do."""
    huge_line = png(16384, 1, 2, [bytes(16384 * 3)])
    return {
        "safetensors": {
            "offsets_overlap.safetensors": st_two([0, 8], [0, 8]),
            "offsets_partial_overlap.safetensors": st_two([0, 8], [4, 12]),
            "offsets_gap.safetensors": st_two([0, 8], [12, 20], 20),
            "bytes_left_over.safetensors": st_two([0, 8], [8, 16], 20),
            "raw_ff_in_header.safetensors": safetensors(b'{"a": \xff}'),
            "control_chars_in_name.safetensors": safetensors(
                b'{"a\\nb\\u001b[31m": {"dtype": "X", "shape": [], "data_offsets": [0, 0]}}'),
        },
        "torch_save": {
            "stride0_view_1gib.pth": legacy_checkpoint(1, 0, [1 << 30], [0]),
            "overlapping_strides.pth": legacy_checkpoint(4, 0, [3, 3], [1, 1]),
            "cycle_list_appended_to_itself.pth": PROTO + b"]q\x00h\x00a.",
            "cycle_build_state_is_itself.pth": PROTO + p_global("argparse", "Namespace") + b")R2b.",
            "cycle_popped_before_stop.pth": PROTO + b"}q\x00(K\x01h\x00\x85u0N.",
        },
        "config": {
            "ss_vocab_roundup_overflow.json": json.dumps({"d_model": 64, "vocab_size": 2**63 - 2,
                                                          "pad_vocab_size_multiple": 8}).encode(),
            "hf_expand_times_hidden_overflow.json": json.dumps({"hidden_size": 2**63 - 1, "expand": 4}).encode(),
            "ss_d_model_plus_15_overflow.json": json.dumps({"d_model": 2**63 - 1}).encode(),
            "hf_expand_unchecked_with_intermediate.json": json.dumps({"hidden_size": 64, "expand": -5,
                                                                      "intermediate_size": 128}).encode(),
            "hf_unsigned_beyond_int64.json": b'{"hidden_size": 18446744073709551615}',
            "vim_in_chans_minus_1.json": json.dumps({"model_type": "vim", "in_chans": -1}).encode(),
            "vim_in_chans_2e8.json": json.dumps({"model_type": "vim", "in_chans": 200000000}).encode(),
            "vim_embed_dim_plus_15_overflow.json": json.dumps({"model_type": "vim", "embed_dim": 2**63 - 1}).encode(),
        },
        "tokenizer": {
            "id_near_int32_max.bin": tokenizer(lambda j: j["model"]["vocab"].update({"ab": 2**31 - 2})),
            "added_token_id_2e9.bin": tokenizer(lambda j: j["added_tokens"][0].update({"id": 2000000000})),
            "normalizer_is_a_list.bin": tokenizer(lambda j: j.update({"normalizer": [1, 2]})),
            "normalizer_is_a_string.bin": tokenizer(lambda j: j.update({"normalizer": "NFC"})),
            "pre_tokenizer_type_is_a_number.bin": tokenizer(lambda j: j["pre_tokenizer"].update({"type": 7})),
            "sequence_member_type_is_a_number.bin": tokenizer(
                lambda j: j.update({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": 3}]}})),
        },
        "image": {
            "png_16384x16384_header_only.png": png_header_only(16384, 16384),
            "png_16384x1_resized_whole_before_crop.png": huge_line,
            "png_header_without_pixels.png": png_header_only(64, 32),
        },
        "composite": {
            "not_an_object.json": b"[1, 2, 3]",
            "rule_of_wrong_type.json": b'{"in_proj": 5, "head": {"rule": 3}}',
            "gamma_of_wrong_type.json": b'{"head": {"rule": "gamma", "gamma": "x"}}',
            "epsilon_nan_like.json": b'{"head": {"rule": "epsilon", "epsilon": 1e999}}',
            "raw_ff.json": b'{"\xff": 1}',
        },
        "cli_args": {
            "value_missing.bin": args("explain", "--ids"),
            "target_beyond_int64.bin": args("explain", "--target", "99999999999999999999999"),
            "ids_empty_entry.bin": args("explain", "--ids", "1,,2"),
            "control_chars.bin": args("explain", "--model\n\x1b[2J", b"\xff"),
        },
    }


def write(tree, base):
    for target, files in tree.items():
        d = base / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "seeds":
        write(seeds(), pathlib.Path(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "regressions":
        base = ROOT / "tests" / "fuzz" / "regressions"
        write(regressions(), base)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
