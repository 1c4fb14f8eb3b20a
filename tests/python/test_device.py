"""--device on every command of mamba-lrp, and the ops' coverage of CUDA, checked on any
machine: a bad device name and (without CUDA) --device cuda are bad input (exit 2, one line
saying why); --device cpu is the default; every op has a CUDA kernel or an ATen composite.
The runs on a GPU are in test_cuda_explain.py."""
import json
import re

import pytest
import torch

import fixtures
from cli import ROOT, run

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("device")
    lm, clf, vim = d / "lm", d / "clf", d / "vim"
    fixtures.write_hf_mamba_dir(lm, seed=1)
    fixtures.write_hf_mamba_dir(clf, {"num_labels": 2}, seed=2)
    fixtures.write_vim_dir(vim, {"num_classes": 3}, seed=3)
    ids = d / "ids.safetensors"
    fixtures.write_inputs(ids, input_ids=fixtures.random_ids(2, 5, 64, seed=4), labels=torch.tensor([0, 1]))
    pixels = d / "pixels.safetensors"
    fixtures.write_inputs(pixels, pixel_values=fixtures.random_pixels(2, {"num_classes": 3}, seed=5),
                          labels=torch.tensor([0, 2]))
    (d / "out").mkdir()
    return {"lm": lm, "clf": clf, "vim": vim, "ids": ids, "pixels": pixels, "out": d / "out"}


def commands(s):
    """Every command, with inputs it accepts."""
    return {
        "explain-lm": ["explain", "--model", s["lm"], "--input", s["ids"], "--json", "-"],
        "explain-vim": ["explain", "--model", s["vim"], "--input", s["pixels"], "--json", "-"],
        "forward": ["forward", "--model", s["lm"], "--input", s["ids"], "--output", s["out"] / "logits.safetensors"],
        "evaluate-lm": ["evaluate", "--model", s["clf"], "--data", s["ids"], "--methods", "mambalrp,gi",
                        "--steps", "3", "--json", s["out"] / "eval.json"],
        "evaluate-vim": ["evaluate", "--model", s["vim"], "--data", s["pixels"], "--methods", "mambalrp,gi",
                         "--steps", "3", "--json", s["out"] / "eval_vim.json"],
        "train": ["train", "--model", s["clf"], "--data", s["ids"], "--out", s["out"] / "trained", "--epochs", "1",
                  "--quiet"],
        "generate": ["generate", "--model", s["lm"], "--ids", "1,2,3", "--max-new-tokens", "2", "--explain",
                     "--json", "-"],
    }


COMMANDS = ["explain-lm", "explain-vim", "forward", "evaluate-lm", "evaluate-vim", "train", "generate"]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_bad_input(setup, name):
    p = run(*commands(setup)[name], "--device", "cuda", check=False)
    assert p.returncode == 2, p.stderr
    assert "CUDA is not available" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", COMMANDS)
def test_device_unknown_name_is_bad_input(setup, name):
    p = run(*commands(setup)[name], "--device", "tpu", check=False)
    assert p.returncode == 2, p.stderr
    assert "--device must be cpu or cuda" in p.stderr


@pytest.mark.parametrize("name", ["explain-lm", "explain-vim", "generate"])
def test_device_cpu_is_the_default(setup, name):
    # Same program, same inputs: the option must not change a CPU run by a bit.
    default = json.loads(run(*commands(setup)[name]).stdout)
    cpu = json.loads(run(*commands(setup)[name], "--device", "cpu").stdout)
    assert cpu == default


@pytest.mark.parametrize("name", ["evaluate-lm", "train"])
def test_device_cpu_runs(setup, name):
    run(*commands(setup)[name], "--device", "cpu")


def test_usage_lists_device():
    text = run("--help").stdout
    for command in ("explain", "forward", "evaluate", "train", "generate"):
        synopsis = run(command, "--help").stdout
        assert "--device cpu|cuda" in synopsis, command
    assert text.count("--device cpu|cuda") >= 5


def declared_ops():
    src = (ROOT / "csrc" / "ops" / "ops.cpp").read_text()
    return re.findall(r'm\.def\(\s*"(\w+)\(', src)


def cuda_kernel_ops():
    """The ops csrc/ops/cuda registers for the CUDA dispatch key."""
    names = set()
    for f in (ROOT / "csrc" / "ops" / "cuda").glob("*.cpp"):
        for block in re.findall(r"TORCH_LIBRARY_IMPL\(mamba_lrp, CUDA, m\) \{(.*?)\n\}", f.read_text(), re.S):
            names.update(re.findall(r'm\.impl\("(\w+)"', block))
    return names


def test_every_op_has_a_cuda_kernel_or_a_composite(ops):
    names = declared_ops()
    assert len(names) >= 20 and "selective_scan" in names and "linear_gamma" in names
    cuda = cuda_kernel_ops()
    assert {"_selective_scan_fwd", "_selective_scan_bwd"} <= cuda
    for name in names:
        composite = torch._C._dispatch_has_kernel_for_dispatch_key(f"mamba_lrp::{name}", "CompositeExplicitAutograd")
        assert composite or name in cuda, f"{name}: neither an ATen composite nor a CUDA kernel"
        if torch.cuda.is_available() and name in cuda:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mamba_lrp::{name}", "CUDA"), name
