"""Shared fixtures: load the op library built by CMake."""
import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB = pathlib.Path(os.environ.get("MAMBA_LRP_LIB", ROOT / "build" / "libmamba_lrp.so"))


def pytest_configure(config):
    if not LIB.exists():
        raise pytest.UsageError(f"{LIB} not found: build the project first (scripts/setup.sh)")
    torch.ops.load_library(str(LIB))


@pytest.fixture
def ops():
    return torch.ops.mamba_lrp
