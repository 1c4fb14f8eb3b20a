"""Finds build/libmamba_lrp.so and loads it into torch (once): the ops then live under
torch.ops.mamba_lrp.

Where it looks, first match wins: the environment variable MAMBA_LRP_LIB (a path to the
library), then build/libmamba_lrp.so of the checkout this package sits in (python/ is next to
build/, DESIGN.md §2).
"""
import os
import pathlib
import threading

import torch

_REPO = pathlib.Path(__file__).resolve().parents[2]
_lock = threading.Lock()
_loaded = None


def library_path():
    """The library this package loads (or would load)."""
    env = os.environ.get("MAMBA_LRP_LIB")
    return pathlib.Path(env) if env else _REPO / "build" / "libmamba_lrp.so"


def ops():
    """torch.ops.mamba_lrp, with the library loaded."""
    global _loaded
    with _lock:
        if _loaded is None:
            path = library_path()
            if not path.is_file():
                raise ImportError(
                    f"mamba_lrp: the op library {path} is not there: build the project first "
                    "(scripts/setup.sh) or set MAMBA_LRP_LIB to its path")
            torch.ops.load_library(str(path))
            _loaded = path
    return torch.ops.mamba_lrp
