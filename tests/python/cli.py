"""Running build/mamba-lrp from the Python tests."""
import json
import os
import pathlib
import subprocess

import torch

import st_io

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MAMBA_LRP_BUILD", ROOT / "build"))
CLI = BUILD / "mamba-lrp"


def run(*args, check=True):
    """Runs `mamba-lrp ARGS`; with check, a non-zero exit fails the test with its stderr."""
    p = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"mamba-lrp {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def explain_json(model, inputs, method="mambalrp", dtype="float64", extra=()):
    """`mamba-lrp explain --json -` of an inputs file, parsed."""
    p = run("explain", "--model", model, "--input", inputs, "--method", method, "--dtype", dtype, "--json", "-", *extra)
    return json.loads(p.stdout)


def relevance_of(out):
    """The relevance rows of explain's JSON as one float64 tensor."""
    return torch.tensor([e["relevance"] for e in out["explanations"]], dtype=torch.float64)


def cpp_logits(model, inputs, dtype, tmp_path):
    """The logits `mamba-lrp forward` writes for an inputs file."""
    out = tmp_path / "logits.safetensors"
    run("forward", "--model", model, "--input", inputs, "--dtype", dtype, "--output", out)
    return st_io.load_file(out)["logits"]
