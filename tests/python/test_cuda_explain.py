"""The whole pipeline on CUDA through the command line (--device cuda): explanations of a
Mamba LM (MambaLRP, GI, an ablation, the recomputing branch, padded rows) and of a Vision
Mamba, evaluate, and train's first-batch gradients, each against the same command on the
CPU in float64. Skipped as a whole without a CUDA device (ctest label cuda).

Tolerance, max |cuda - cpu64| / max |cpu64| over each output: 2e-3. The GPU run is float32:
its own rounding (2^-24 per operation, over a few layers and sums of at most a few hundred
terms) stays near 1e-5, but the convolutions (each block's depthwise conv1d, Vim's patch
embedding) run through cuDNN, which PyTorch allows to use TF32 (a 10-bit mantissa, 2^-11
relative per product) on Ampere and newer GPUs. A wrong rule changes relevance by O(1).
"""
import json

import pytest
import torch

import fixtures
from cli import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TOL = 2e-3


def rel_err(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda_explain")
    lm, clf, vim = d / "lm", d / "clf", d / "vim"
    fixtures.write_hf_mamba_dir(lm, seed=11)
    fixtures.write_hf_mamba_dir(clf, {"num_labels": 3}, seed=12)
    fixtures.write_vim_dir(vim, {"num_classes": 4}, seed=13)
    ids = fixtures.random_ids(3, 9, 64, seed=14)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # row 1 left-padded
    lm_inputs = d / "ids.safetensors"
    fixtures.write_inputs(lm_inputs, input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2, 1]))
    pixels = d / "pixels.safetensors"
    fixtures.write_inputs(pixels, pixel_values=fixtures.random_pixels(2, {"num_classes": 4}, seed=15),
                          labels=torch.tensor([3, 1]))
    return {"lm": lm, "clf": clf, "vim": vim, "ids": lm_inputs, "pixels": pixels, "dir": d}


def explain(model, inputs, device, *extra):
    dtype = "float32" if device == "cuda" else "float64"
    p = run("explain", "--model", model, "--input", inputs, "--device", device, "--dtype", dtype, "--json", "-",
            *extra)
    return json.loads(p.stdout)["explanations"]


def assert_explanations_close(gpu, cpu):
    assert len(gpu) == len(cpu)
    for g, c in zip(gpu, cpu):
        assert g["target"] == c["target"]
        assert rel_err(g["relevance"], c["relevance"]) < TOL
        assert abs(g["logit"] - c["logit"]) <= TOL * max(1.0, abs(c["logit"]))


@pytest.mark.parametrize("method", ["mambalrp", "gi", "mambalrp-no-gate"])
@pytest.mark.parametrize("recompute", ["off", "on"])
def test_lm_explanation_on_cuda_matches_cpu_float64(setup, method, recompute):
    extra = ("--method", method, "--recompute", recompute)
    gpu = explain(setup["lm"], setup["ids"], "cuda", *extra)
    cpu = explain(setup["lm"], setup["ids"], "cpu", *extra)
    assert_explanations_close(gpu, cpu)
    assert all(r == 0 for r in gpu[1]["relevance"][:3]), "padded positions get relevance 0"


def test_lm_conservation_on_cuda(setup):
    # Every bias zero: sum R = f (DESIGN.md §1), on the GPU too.
    for e in explain(setup["lm"], setup["ids"], "cuda", "--zero-bias"):
        assert abs(e["relevance_sum"] - e["logit"]) <= TOL * max(1.0, abs(e["logit"]))


@pytest.mark.parametrize("method", ["mambalrp", "gi"])
def test_vim_explanation_on_cuda_matches_cpu_float64(setup, method):
    gpu = explain(setup["vim"], setup["pixels"], "cuda", "--method", method)
    cpu = explain(setup["vim"], setup["pixels"], "cpu", "--method", method)
    assert_explanations_close(gpu, cpu)
    for g, c in zip(gpu, cpu):
        assert rel_err(g["patch_relevance"], c["patch_relevance"]) < TOL


def test_forward_on_cuda_matches_cpu_float64(setup):
    import st_io
    out = {}
    for device, dtype in (("cuda", "float32"), ("cpu", "float64")):
        path = setup["dir"] / f"logits_{device}.safetensors"
        run("forward", "--model", setup["lm"], "--input", setup["ids"], "--device", device, "--dtype", dtype,
            "--output", path)
        out[device] = st_io.load_file(path)["logits"]
    assert rel_err(out["cuda"], out["cpu"]) < TOL


@pytest.mark.parametrize("kind", ["lm", "vim"])
def test_evaluate_on_cuda(setup, kind):
    model, data = (setup["clf"], setup["ids"]) if kind == "lm" else (setup["vim"], setup["pixels"])
    reports = {}
    for device, dtype in (("cuda", "float32"), ("cpu", "float64")):
        path = setup["dir"] / f"eval_{kind}_{device}.json"
        run("evaluate", "--model", model, "--data", data, "--methods", "mambalrp,gi", "--steps", "4",
            "--device", device, "--dtype", dtype, "--json", path)
        reports[device] = json.loads(path.read_text())
    assert reports["cuda"].keys() == reports["cpu"].keys()
    # Sum R and f per row (the conservation points) are computed without flipping: comparable.
    assert reports["cuda"]["conservation"].keys() == reports["cpu"]["conservation"].keys() == {"mambalrp", "gi"}
    for method, c in reports["cpu"]["conservation"].items():
        g = reports["cuda"]["conservation"][method]
        assert rel_err(g["logit"], c["logit"]) < TOL, method
        assert rel_err(g["relevance_sum"], c["relevance_sum"]) < TOL, method


def test_train_first_batch_gradients_on_cuda(setup):
    import st_io
    grads = {}
    for device, dtype in (("cuda", "float32"), ("cpu", "float64")):
        dump = setup["dir"] / f"grads_{device}.safetensors"
        run("train", "--model", setup["clf"], "--data", setup["ids"], "--out", setup["dir"] / f"trained_{device}",
            "--epochs", "1", "--batch-size", "3", "--device", device, "--dtype", dtype, "--dump-grads", dump,
            "--quiet")
        grads[device] = st_io.load_file(dump)
    assert grads["cuda"].keys() == grads["cpu"].keys()
    for name, c in grads["cpu"].items():
        assert rel_err(grads["cuda"][name], c) < TOL, name


def test_cuda_with_float64_is_bad_input(setup):
    p = run("explain", "--model", setup["lm"], "--input", setup["ids"], "--device", "cuda", "--dtype", "float64",
            check=False)
    assert p.returncode == 2 and "float64" in p.stderr


def test_generate_on_cuda_matches_cpu_float64(setup):
    # Greedy decoding with the state carried on the GPU, and the batched MambaLRP of every
    # generated token. The random model's logits are far apart (max |logit gap| >> TOL), so
    # both devices pick the same tokens; the relevance compares as everywhere above.
    out = {}
    for device, dtype in (("cuda", "float32"), ("cpu", "float64")):
        p = run("generate", "--model", setup["lm"], "--ids", "3,1,4,1,5", "--max-new-tokens", "4", "--explain",
                "--device", device, "--dtype", dtype, "--json", "-")
        out[device] = json.loads(p.stdout)
    assert out["cuda"]["generated_ids"] == out["cpu"]["generated_ids"]
    assert_explanations_close(out["cuda"]["explanations"], out["cpu"]["explanations"])
