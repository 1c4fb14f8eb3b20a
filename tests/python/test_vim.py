"""The C++ Vision Mamba and `mamba-lrp explain` for Vim models against the independent
pure-PyTorch reference (vim_reference.py), the official code's golden numbers, conservation,
image input and bad input."""
import io
import json
import os
import pathlib
import shutil
import struct
import zlib

import pytest
import torch

import fixtures
import st_io
import explainer_reference as xr
from vim_reference import VimReference, explain_vim as ref_explain

from cli import BUILD, CLI, ROOT, relevance_of, run  # noqa: F401
GOLDEN = pathlib.Path(os.environ.get("MAMBA_LRP_GOLDEN", ROOT / "tests" / "golden"))
COMPOSITES = ROOT / "configs" / "composites"
METHODS = ["mambalrp", "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate"]
REF_MODE = {"gi": "standard"}
GAMMA_CONV1D = {"conv1d": {"rule": "gamma", "gamma": 0.25}}
DEFAULT_COMPOSITE = {"patch_embed": {"rule": "gamma", "gamma": 0.25}}
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)[:, None, None]


def explain(model, inputs, tmp_path, method="mambalrp", dtype="float64", composite=None, extra=()):
    """(JSON output, tensors of --output) of one explain run on a pixel_values file."""
    args = ["explain", "--model", model, "--input", inputs, "--method", method, "--dtype", dtype, "--json", "-",
            "--output", tmp_path / "out.safetensors", *extra]
    if composite is not None:
        (tmp_path / "composite.json").write_text(json.dumps(composite))
        args += ["--composite", tmp_path / "composite.json"]
    p = run(*args)
    return json.loads(p.stdout), st_io.load_file(tmp_path / "out.safetensors")


@pytest.fixture(scope="module")
def vim_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("vim_small")
    fixtures.write_vim_dir(d, seed=1)
    return d


@pytest.fixture(scope="module")
def vim_inputs(tmp_path_factory):
    p = tmp_path_factory.mktemp("inputs") / "pixels.safetensors"
    x = fixtures.random_pixels(3, seed=5)
    fixtures.write_inputs(p, pixel_values=x)
    return p, x


# ---- forward --------------------------------------------------------------------------------

VARIANTS = {
    "middle_cls": {},
    "head_cls": {"use_middle_cls_token": False},
    "no_cls_mean": {"if_cls_token": False, "final_pool_type": "mean"},
    "no_cls_last": {"if_cls_token": False, "final_pool_type": "none"},
    "no_cls_max": {"if_cls_token": False, "final_pool_type": "max"},
    "layernorm": {"rms_norm": False},
    "no_divide_no_pos": {"if_devide_out": False, "if_abs_pos_embed": False},
    "one_direction": {"bimamba_type": "none"},
    "overlapping_patches": {"stride": 4, "d_state": 5, "expand": 1, "depth": 3},
    "grey": {"in_chans": 1},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_and_relevance_equal_reference(tmp_path, variant):
    over = VARIANTS[variant]
    d = tmp_path / "m"
    fixtures.write_vim_dir(d, over, seed=2)
    x = fixtures.random_pixels(2, over, seed=3)
    fixtures.write_inputs(tmp_path / "px.safetensors", pixel_values=x)
    ref = VimReference.from_dir(d, dtype=torch.float64)
    out, t = explain(d, tmp_path / "px.safetensors", tmp_path, "gi", composite={})
    torch.testing.assert_close(t["logits"], ref(x.double()), rtol=1e-10, atol=1e-10)
    out, t = explain(d, tmp_path / "px.safetensors", tmp_path, "mambalrp", composite=GAMMA_CONV1D)
    r = ref_explain(ref, x.double(), "mambalrp", composite=GAMMA_CONV1D)
    assert [e["target"] for e in out["explanations"]] == r.targets.tolist()
    assert all(e["cls_position"] == (-1 if r.cls_position is None else r.cls_position) for e in out["explanations"])
    R = r.token_relevance
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())


def test_float32_forward(vim_model, vim_inputs, tmp_path):
    path, x = vim_inputs
    _, t = explain(vim_model, path, tmp_path, "gi", dtype="float32")
    ref = VimReference.from_dir(vim_model, dtype=torch.float64)(x.double())
    assert t["logits"].dtype == torch.float32
    assert ((t["logits"].double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


# ---- relevance ------------------------------------------------------------------------------

@pytest.mark.parametrize("composite", [{}, GAMMA_CONV1D], ids=["lrp0", "gamma_conv1d"])
@pytest.mark.parametrize("method", METHODS)
def test_relevance_equals_reference(vim_model, vim_inputs, tmp_path, method, composite):
    path, x = vim_inputs
    out, t = explain(vim_model, path, tmp_path, method, composite=composite)
    assert out["model_type"] == "vim" and out["method"] == method
    model = VimReference.from_dir(vim_model, dtype=torch.float64)
    r = ref_explain(model, x.double(), REF_MODE.get(method, method), composite=composite, pixels=True)
    R = r.token_relevance
    assert [e["target"] for e in out["explanations"]] == r.targets.tolist()
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]], dtype=torch.float64), r.logit,
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    P = r.pixel_relevance
    torch.testing.assert_close(t["pixel_relevance"], P, rtol=1e-9, atol=1e-9 * P.abs().max().item())
    for e, row in zip(out["explanations"], R):
        assert e["cls_position"] == 2 and e["position"] == 2  # 4 patches, cls in the middle
        assert abs(e["relevance_sum"] - row.sum().item()) < 1e-9
        grid = torch.tensor(e["patch_relevance"], dtype=torch.float64)
        assert grid.shape == (2, 2)
        torch.testing.assert_close(grid.flatten(), torch.cat([row[:2], row[3:]]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("recompute", ["on", "off"])
def test_recompute_keeps_the_relevance(vim_model, vim_inputs, tmp_path, recompute):
    """Both scan directions through the recompute branch node (--recompute on) or the
    composition of rule ops (off): the same relevance as the reference."""
    path, x = vim_inputs
    out, t = explain(vim_model, path, tmp_path, "mambalrp", composite={}, extra=("--recompute", recompute))
    r = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), x.double(), "mambalrp", composite={},
                    pixels=True)
    R = r.token_relevance
    torch.testing.assert_close(relevance_of(out), R, rtol=1e-9, atol=1e-9 * R.abs().max().item())
    P = r.pixel_relevance
    torch.testing.assert_close(t["pixel_relevance"], P, rtol=1e-9, atol=1e-9 * P.abs().max().item())


def test_default_composite_is_mambalrp_vim(vim_model, vim_inputs, tmp_path):
    """No --composite: γ on the patch embedding only (configs/composites/mambalrp-vim.json)."""
    path, x = vim_inputs
    assert json.loads((COMPOSITES / "mambalrp-vim.json").read_text()) == DEFAULT_COMPOSITE
    out, t = explain(vim_model, path, tmp_path, "mambalrp")
    r = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), x.double(), "mambalrp",
                    composite=DEFAULT_COMPOSITE, pixels=True)
    torch.testing.assert_close(relevance_of(out), r.token_relevance, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(t["pixel_relevance"], r.pixel_relevance, rtol=1e-9, atol=1e-12)
    out2, _ = explain(vim_model, path, tmp_path, "mambalrp", extra=("--composite", COMPOSITES / "mambalrp-vim.json"))
    assert relevance_of(out2).tolist() == relevance_of(out).tolist()
    # GI stays the plain gradient x input without --composite
    out_gi, _ = explain(vim_model, path, tmp_path, "gi")
    r_gi = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), x.double(), "standard")
    torch.testing.assert_close(relevance_of(out_gi), r_gi.token_relevance, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(p.name for p in COMPOSITES.glob("*.json")))
def test_shipped_composites(vim_model, vim_inputs, tmp_path, name):
    path, x = vim_inputs
    comp = json.loads((COMPOSITES / name).read_text())
    out, _ = explain(vim_model, path, tmp_path, extra=("--composite", COMPOSITES / name))
    r = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), x.double(), "mambalrp", composite=comp)
    torch.testing.assert_close(relevance_of(out), r.token_relevance, rtol=1e-8, atol=1e-10)


def test_target_and_batch_rows(vim_model, vim_inputs, tmp_path):
    path, x = vim_inputs
    out, _ = explain(vim_model, path, tmp_path, extra=("--target", "1"))
    r = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), x.double(), "mambalrp",
                    composite=DEFAULT_COMPOSITE, target=1)
    assert all(e["target"] == 1 for e in out["explanations"])
    torch.testing.assert_close(relevance_of(out), r.token_relevance, rtol=1e-9, atol=1e-12)
    fixtures.write_inputs(tmp_path / "one.safetensors", pixel_values=x[1])  # (C, H, W)
    one, _ = explain(vim_model, tmp_path / "one.safetensors", tmp_path, extra=("--target", "1"))
    torch.testing.assert_close(relevance_of(one)[0], relevance_of(out)[1], rtol=1e-12, atol=1e-13)


# ---- conservation (every bias zero, float64) ---------------------------------------------------

def test_conservation_head_to_tokens(vim_model, vim_inputs, tmp_path):
    path, _ = vim_inputs
    for method, comp, conserved in [("mambalrp", None, True), ("mambalrp", {}, True), ("gi", {}, False)]:
        out, _ = explain(vim_model, path, tmp_path, method, composite=comp, extra=("--zero-bias",))
        for e in out["explanations"]:
            gap = abs(e["relevance_sum"] - e["logit"])
            if conserved:
                assert gap <= 1e-8 * max(1.0, abs(e["logit"])), (method, comp, gap)
            else:
                assert gap > 1e-3 * max(1.0, abs(e["logit"])), (method, gap)


def test_conservation_down_to_pixels(vim_model, vim_inputs, tmp_path):
    """LRP-0 everywhere incl. the patch embedding: pixels + the share of the learned inputs
    (cls token, pos_embed) = f; a model without those puts everything on the pixels."""
    path, _ = vim_inputs
    out, _ = explain(vim_model, path, tmp_path, composite={}, extra=("--zero-bias",))
    for e in out["explanations"]:
        assert abs(e["pixel_relevance_sum"] + e["constant_relevance"] - e["logit"]) <= 1e-8 * max(1, abs(e["logit"]))
    over = {"if_cls_token": False, "if_abs_pos_embed": False}
    d = tmp_path / "plain"
    fixtures.write_vim_dir(d, over, seed=4)
    fixtures.write_inputs(tmp_path / "px.safetensors", pixel_values=fixtures.random_pixels(2, over, seed=6))
    for comp in ({}, {"patch_embed": {"rule": "gamma", "gamma": 0.5}, "conv1d": {"rule": "gamma"}}):
        out, t = explain(d, tmp_path / "px.safetensors", tmp_path, composite=comp, extra=("--zero-bias",))
        for e, pix in zip(out["explanations"], t["pixel_relevance"]):
            assert e["constant_relevance"] == 0.0
            assert abs(pix.sum().item() - e["logit"]) <= 1e-8 * max(1, abs(e["logit"])), comp


# ---- golden numbers of the official implementation ----------------------------------------------

@pytest.mark.skipif(not (GOLDEN / "vim").exists(), reason="golden files not found")
@pytest.mark.parametrize("folder,composite", [("vim", None), ("vim", "lrp0.json"),
                                              ("vim-gamma-conv1d", "mambalrp-vim-gamma-conv1d.json")])
def test_golden_official_relevance(tmp_path, folder, composite):
    """The default composite (γ on the patch embedding only) gives the official code's
    token relevance; γ on conv1d as the official layer_transforms=['conv1d']."""
    exp = st_io.load_file(GOLDEN / folder / "expected.safetensors")
    fixtures.write_inputs(tmp_path / "px.safetensors", pixel_values=exp["image"])
    extra = ("--composite", COMPOSITES / composite) if composite else ()
    out, t = explain(GOLDEN / folder, tmp_path / "px.safetensors", tmp_path, dtype="float32", extra=extra)
    assert [e["target"] for e in out["explanations"]] == exp["target"].to(torch.int64).tolist()
    torch.testing.assert_close(t["logits"], exp["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]]), exp["output_f"], rtol=1e-5,
                               atol=1e-5)
    # The official SiLU ratio carries a 1e-6 stabiliser (golden README): ~1e-5 of max |R| in float32.
    R = relevance_of(out).float()
    err = ((R - exp["token_relevance"]).abs().max() / exp["token_relevance"].abs().max()).item()
    assert err < 5e-5, err


# ---- checkpoints ---------------------------------------------------------------------------------

def test_pth_checkpoint(tmp_path, vim_inputs):
    path, x = vim_inputs
    fixtures.write_vim_dir(tmp_path / "st", seed=7)
    fixtures.write_vim_dir(tmp_path / "pth", seed=7, pth=True)
    assert not (tmp_path / "pth" / "model.safetensors").exists()
    a, _ = explain(tmp_path / "st", path, tmp_path)
    b, _ = explain(tmp_path / "pth", path, tmp_path)
    c, _ = explain(tmp_path / "pth" / "checkpoint.pth", path, tmp_path)  # the file itself, config.json beside it
    assert relevance_of(a).tolist() == relevance_of(b).tolist() == relevance_of(c).tolist()
    # float16 weights (as some released checkpoints) load and convert
    fixtures.write_vim_dir(tmp_path / "half", seed=7, dtype=torch.float16, pth=True)
    explain(tmp_path / "half", path, tmp_path)


# ---- images --------------------------------------------------------------------------------------

def png_bytes(rgb):
    """A minimal PNG encoder: rgb (H, W, 3) or (H, W) uint8."""
    h, w = rgb.shape[:2]
    colour = 2 if rgb.dim() == 3 else 0
    raw = b"".join(b"\x00" + rgb[y].contiguous().numpy().tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def random_rgb(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)


def normalise(rgb):
    return ((rgb.permute(2, 0, 1).double() / 255) - IMAGENET_MEAN) / IMAGENET_STD


def test_png_input_exact_size(vim_model, tmp_path):
    rgb = random_rgb(16, 16, seed=1)
    (tmp_path / "img.png").write_bytes(png_bytes(rgb))
    p = run("explain", "--model", vim_model, "--image", tmp_path / "img.png", "--no-resize", "--dtype", "float64",
            "--json", "-", "--output", tmp_path / "o.safetensors", "--png", tmp_path / "heat.png")
    out = json.loads(p.stdout)
    t = st_io.load_file(tmp_path / "o.safetensors")
    x = normalise(rgb)[None]
    torch.testing.assert_close(t["pixel_values"], x, rtol=0, atol=1e-6)
    r = ref_explain(VimReference.from_dir(vim_model, dtype=torch.float64), t["pixel_values"], "mambalrp",
                    composite=DEFAULT_COMPOSITE)
    torch.testing.assert_close(relevance_of(out), r.token_relevance, rtol=1e-9, atol=1e-12)
    PIL = pytest.importorskip("PIL.Image")
    heat = PIL.open(tmp_path / "heat.png")
    patches = PIL.open(tmp_path / "heat_patches.png")
    assert heat.size == (16, 16) and heat.mode == "RGB"
    assert patches.size == (16, 16)
    # the patch grid image: the most relevant patch is pure red or pure blue
    cells = torch.tensor(list(patches.getdata()), dtype=torch.int64).view(16, 16, 3)[::8, ::8]
    assert any(c.tolist() in ([255, 0, 0], [0, 0, 255]) for c in cells.reshape(-1, 3))


def test_png_resize_and_centre_crop_like_pil(vim_model, tmp_path):
    """Shorter side to floor(16 / 0.875) = 18 (antialiased bilinear), centre 16x16 crop."""
    PIL = pytest.importorskip("PIL.Image")
    rgb = random_rgb(45, 60, seed=2)  # H 45, W 60 -> 18 x 24
    (tmp_path / "img.png").write_bytes(png_bytes(rgb))
    run("explain", "--model", vim_model, "--image", tmp_path / "img.png", "--output", tmp_path / "o.safetensors")
    ours = st_io.load_file(tmp_path / "o.safetensors")["pixel_values"].double()
    img = PIL.fromarray(rgb.numpy()).resize((24, 18), PIL.BILINEAR)
    ref = torch.tensor(list(img.getdata()), dtype=torch.uint8).view(18, 24, 3)[1:17, 4:20]
    # PIL rounds to 8 bits after each pass: within 2/255 before normalisation
    assert (ours[0] - normalise(ref)).abs().max().item() < 2.5 / 255 / 0.224


def test_jpeg_and_grey_png_input(vim_model, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    rgb = random_rgb(16, 16, seed=3) // 64 * 64  # few levels: JPEG keeps them close
    buf = io.BytesIO()
    PIL.fromarray(rgb.numpy()).save(buf, format="JPEG", quality=95)
    (tmp_path / "img.jpg").write_bytes(buf.getvalue())
    run("explain", "--model", vim_model, "--image", tmp_path / "img.jpg", "--no-resize", "--output",
        tmp_path / "o.safetensors")
    ours = st_io.load_file(tmp_path / "o.safetensors")["pixel_values"].double()[0]
    pil = torch.tensor(list(PIL.open(tmp_path / "img.jpg").convert("RGB").getdata()), dtype=torch.uint8).view(16, 16, 3)
    # decoders may differ by an IDCT rounding step
    assert (ours - normalise(pil)).abs().max().item() < 4 / 255 / 0.224
    grey = random_rgb(16, 16, seed=4)[..., 0]
    (tmp_path / "grey.png").write_bytes(png_bytes(grey))
    run("explain", "--model", vim_model, "--image", tmp_path / "grey.png", "--no-resize", "--output",
        tmp_path / "g.safetensors")
    px = st_io.load_file(tmp_path / "g.safetensors")["pixel_values"].double()[0]
    torch.testing.assert_close(px, normalise(grey[..., None].expand(16, 16, 3)), rtol=0, atol=1e-6)


# ---- bad input: exit 2 with a one-line reason -----------------------------------------------------

def _copy(src, dst, fn):
    shutil.copytree(src, dst)
    fn(dst)
    return dst


def _edit_weights(fn):
    def edit(d):
        sd = st_io.load_file(d / "model.safetensors")
        fn(sd)
        st_io.save_file(sd, d / "model.safetensors")
    return edit


def _lm_checkpoint(d):
    fixtures.write_hf_mamba_dir(d / "lm", seed=1)
    shutil.copy(d / "lm" / "model.safetensors", d / "model.safetensors")


@pytest.mark.parametrize("name,corrupt,words", [
    ("lm_weights", _lm_checkpoint, ["model.safetensors", "missing tensor", "patch_embed.proj.weight"]),
    ("extra", _edit_weights(lambda sd: sd.__setitem__("layers.9.mixer.D", torch.zeros(32))),
     ["unexpected tensor", "layers.9.mixer.D"]),
    ("missing", _edit_weights(lambda sd: sd.pop("layers.1.mixer.A_b_log")), ["missing tensor", "layers.1.mixer.A_b_log"]),
    ("shape", _edit_weights(lambda sd: sd.__setitem__("pos_embed", torch.zeros(1, 4, 16))), ["pos_embed", "shape"]),
    ("truncated", lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-64]),
     ["model.safetensors"]),
    ("config_json", lambda d: (d / "config.json").write_text("{oops"), ["config.json", "JSON"]),
    ("config_value", lambda d: (d / "config.json").write_text(json.dumps(dict(fixtures.VIM_SMALL, patch_size=0))),
     ["config.json", "patch_size"]),
    ("config_bimamba", lambda d: (d / "config.json").write_text(json.dumps(dict(fixtures.VIM_SMALL, bimamba_type="v1"))),
     ["bimamba_type"]),
    ("no_weights", lambda d: (d / "model.safetensors").unlink(), ["no weights"]),
])
def test_bad_checkpoints_exit_2(vim_model, vim_inputs, tmp_path, name, corrupt, words):
    d = _copy(vim_model, tmp_path / name, corrupt)
    p = run("explain", "--model", d, "--input", vim_inputs[0], check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("mamba-lrp: ")
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_bad_images_and_inputs_exit_2(vim_model, tmp_path):
    (tmp_path / "big.png").write_bytes(png_bytes(random_rgb(20, 16, seed=1)))
    (tmp_path / "text.png").write_text("this is not an image\n")
    good = png_bytes(random_rgb(16, 16, seed=1))
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    fixtures.write_inputs(tmp_path / "nan.safetensors", pixel_values=torch.full((1, 3, 16, 16), float("nan")))
    fixtures.write_inputs(tmp_path / "inf.safetensors", pixel_values=torch.full((3, 16, 16), float("inf")))
    fixtures.write_inputs(tmp_path / "size.safetensors", pixel_values=torch.zeros(1, 3, 24, 24))
    fixtures.write_inputs(tmp_path / "chans.safetensors", pixel_values=torch.zeros(1, 4, 16, 16))
    fixtures.write_inputs(tmp_path / "ints.safetensors", pixel_values=torch.zeros(1, 3, 16, 16, dtype=torch.int32))
    fixtures.write_inputs(tmp_path / "ids.safetensors", input_ids=torch.zeros(1, 3, dtype=torch.int64))
    cases = [
        (["--image", tmp_path / "big.png", "--no-resize"], ["big.png", "16x20", "16x16", "resizing is off"]),
        (["--image", tmp_path / "text.png"], ["text.png", "not a readable PNG or JPEG"]),
        (["--image", tmp_path / "cut.png"], ["cut.png"]),
        (["--image", tmp_path / "empty.jpg"], ["empty.jpg", "empty"]),
        (["--image", tmp_path / "nowhere.png"], ["nowhere.png", "cannot open"]),
        (["--input", tmp_path / "nan.safetensors"], ["non-finite"]),
        (["--input", tmp_path / "inf.safetensors"], ["non-finite"]),
        (["--input", tmp_path / "size.safetensors"], ["(B, 3, 16, 16)", "[1, 3, 24, 24]"]),
        (["--input", tmp_path / "chans.safetensors"], ["(B, 3, 16, 16)"]),
        (["--input", tmp_path / "ints.safetensors"], ["pixel_values", "F32"]),
        (["--input", tmp_path / "ids.safetensors"], ["pixel_values"]),
        (["--ids", "1,2"], ["--image"]),
        (["--input", tmp_path / "size.safetensors", "--target", "3"], ["(B, 3, 16, 16)"]),
        (["--image", tmp_path / "big.png", "--target", "3"], ["target 3", "out of range"]),
        (["--image", tmp_path / "big.png", "--method", "lrp"], ["unknown method 'lrp'"]),
        (["--image", tmp_path / "big.png", "--position", "1"], ["--position"]),
        (["--image", tmp_path / "big.png", "--composite", tmp_path / "text.png"], ["text.png", "JSON"]),
        (["--input", tmp_path / "nan.safetensors", "--no-resize"], ["--no-resize"]),
        ([], ["exactly one of"]),
    ]
    for args, words in cases:
        p = run("explain", "--model", vim_model, *args, check=False)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.count("\n") == 1, (args, p.stderr)
        for w in words:
            assert w in p.stderr, (args, w, p.stderr)


@pytest.mark.parametrize("name,dim", [("vim-tiny", 192), ("vim-small", 384), ("vim-base", 768)])
def test_presets(tmp_path, name, dim):
    """The presets are hustvl/Vim's v2 middle-cls models: 224 px, patch 16, depth 24, 197 tokens.
    Checked on a 2-block cut of the preset (same shapes per block) against the reference."""
    from vim_reference import vim_config
    cfg = json.loads((ROOT / "configs" / f"{name}.json").read_text())
    full = vim_config(cfg)
    assert (full["embed_dim"], full["depth"], full["num_patches"] + 1, full["d_state"]) == (dim, 24, 197, 16)
    assert cfg["bimamba_type"] == "v2" and cfg["use_middle_cls_token"] and cfg["if_devide_out"]
    if name != "vim-tiny":
        return
    fixtures.write_vim_dir(tmp_path / "m", dict(cfg, depth=2, num_classes=10), seed=1)
    x = fixtures.random_pixels(1, dict(cfg, depth=2), seed=2)
    fixtures.write_inputs(tmp_path / "px.safetensors", pixel_values=x)
    out, _ = explain(tmp_path / "m", tmp_path / "px.safetensors", tmp_path, dtype="float32")
    r = ref_explain(VimReference.from_dir(tmp_path / "m", dtype=torch.float64), x.double(), "mambalrp")
    assert out["explanations"][0]["cls_position"] == 98 and len(out["explanations"][0]["patch_relevance"]) == 14
    R = relevance_of(out)
    assert ((R - r.token_relevance).abs().max() / r.token_relevance.abs().max()).item() < 1e-4


# ---- smoothgrad, ig and random from `explain` ------------------------------------------------

def _baseline_json(model, inputs, method, *extra):
    p = run("explain", "--model", model, "--input", inputs, "--method", method, "--dtype", "float64", "--json", "-",
            *extra)
    return json.loads(p.stdout)


def test_ig_equals_a_riemann_sum_of_the_reference(vim_model, vim_inputs):
    """IG from zero tokens, right Riemann sum with 8 steps, written here on vim_reference."""
    path, x = vim_inputs
    out = _baseline_json(vim_model, path, "ig", "--ig-steps", "8", "--ig-method", "riemann_right")
    model = VimReference.from_dir(vim_model, dtype=torch.float64)
    with torch.no_grad():
        e = model.tokens(model.patch_embed(x.to(torch.float64), {}))
        targets = model.forward_tokens(e).argmax(-1)
    grads = torch.zeros_like(e)
    for k in range(1, 9):
        ek = (e * k / 8).requires_grad_(True)
        f = model.forward_tokens(ek).gather(1, targets[:, None]).sum()
        grads += torch.autograd.grad(f, ek)[0] / 8
    ref = (e * grads).sum(-1)
    torch.testing.assert_close(relevance_of(out), ref, rtol=1e-8, atol=1e-10)
    assert "pixel_relevance_sum" not in out["explanations"][0]  # token relevance only
    assert [len(row) for row in out["explanations"][0]["patch_relevance"]] == [2, 2]


@pytest.mark.parametrize("method", ["attnroll", "mambaattr"])
def test_hidden_attention_rollout_matches_loops(vim_model, vim_inputs, method):
    """Both scan directions: the backward branch's attention (upper triangular in sequence
    order) from the triple loop on the reference, flipped back; rollout by hand; the cls row."""
    path, x = vim_inputs
    model = VimReference.from_dir(vim_model, dtype=torch.float64)
    alphas, grads, f = xr.vim_traced_attention(model, x.double())
    assert len(alphas) == 2 * model.config["depth"]
    out = _baseline_json(vim_model, path, method, "--batch-size", "2")
    want = xr.vim_rollout(alphas, grads, model.config, model.cls_position, method)
    torch.testing.assert_close(relevance_of(out), want, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(torch.tensor([e["logit"] for e in out["explanations"]], dtype=torch.float64), f,
                               rtol=1e-10, atol=1e-10)
    if method == "attnroll":  # rows of a product of row-stochastic matrices
        torch.testing.assert_close(relevance_of(out).sum(1), torch.ones(x.shape[0], dtype=torch.float64))
    # the backward scan matters: with causal scans only, the cls row (middle) could never reach
    # the last token
    assert relevance_of(out)[:, -1].abs().min() > 0


def test_smoothgrad_without_noise_is_gi_and_random_is_seeded(vim_model, vim_inputs, tmp_path):
    path, _ = vim_inputs
    sg = _baseline_json(vim_model, path, "smoothgrad", "--noise", "0", "--samples", "3")
    gi, _ = explain(vim_model, path, tmp_path, "gi")
    torch.testing.assert_close(relevance_of(sg), relevance_of(gi), rtol=1e-10, atol=1e-12)
    r1 = relevance_of(_baseline_json(vim_model, path, "random", "--seed", "3"))
    r2 = relevance_of(_baseline_json(vim_model, path, "random", "--seed", "3"))
    r3 = relevance_of(_baseline_json(vim_model, path, "random", "--seed", "4"))
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    for args, word in [(["--method", "attnroll", "--png", tmp_path / "x.png"], "LRP method"),
                       (["--method", "ig", "--png", tmp_path / "x.png"], "LRP method"),
                       (["--method", "ig", "--ig-baseline", "5"], "--ig-baseline")]:
        p = run("explain", "--model", vim_model, "--input", path, *args, check=False)
        assert p.returncode == 2 and word in p.stderr, (args, p.stderr)
