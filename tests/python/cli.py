"""Running build/mamba-lrp from the Python tests."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MAMBA_LRP_BUILD", ROOT / "build"))
CLI = BUILD / "mamba-lrp"


def run(*args, check=True):
    """Runs `mamba-lrp ARGS`; with check, a non-zero exit fails the test with its stderr."""
    p = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"mamba-lrp {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p
