"""Records the logits a freshly trained model gives the first rows of its test split, into
MODEL_DIR/reference_logits.safetensors (called by scripts/train_models.sh right after
training). tests/python/test_pretrained.py checks the committed models/pretrained/ files
against these, and a retrained model against the committed ones.

    Mamba classifier: input_ids, attention_mask (R, L) and logits (R, classes) at the last position
    Vision Mamba:     pixel_values (R, C, H, W) and logits (R, classes)

usage: record_reference_logits.py MODEL_DIR TEST.safetensors [--rows 4] [--bin build/mamba-lrp]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import st_io  # noqa: E402


def model_logits(binary, model_dir, rows):
    """The model's logits (R, classes) for `rows` (the tensors of reference_logits.safetensors)."""
    vim = json.loads((pathlib.Path(model_dir) / "config.json").read_text()).get("model_type") == "vim"
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = pathlib.Path(tmp) / "rows.safetensors", pathlib.Path(tmp) / "out.safetensors"
        keys = ("pixel_values",) if vim else ("input_ids", "attention_mask")
        st_io.save_file({k: rows[k].contiguous() for k in keys}, str(inp))
        if vim:
            cmd = [binary, "explain", "--model", model_dir, "--input", inp, "--output", out, "--json", "-"]
        else:
            cmd = [binary, "forward", "--model", model_dir, "--input", inp, "--output", out]
        subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
        logits = st_io.load_file(str(out))["logits"]
    return logits if vim else logits[:, -1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("test")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--bin", default=str(ROOT / "build" / "mamba-lrp"))
    a = ap.parse_args()
    test = st_io.load_file(a.test)
    rows = {k: v[:a.rows].contiguous() for k, v in test.items() if k in ("input_ids", "attention_mask", "pixel_values")}
    rows["logits"] = model_logits(a.bin, a.model_dir, rows).contiguous()
    st_io.save_file(rows, str(pathlib.Path(a.model_dir) / "reference_logits.safetensors"))
    print(f"{a.model_dir}/reference_logits.safetensors: {a.rows} test rows")


if __name__ == "__main__":
    main()
