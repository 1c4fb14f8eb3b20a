"""The CUDA selective scan against the CPU op (torch.ops.mamba_lrp.selective_scan on CUDA
tensors dispatches to the CUDA kernels). Skipped as a whole without a CUDA device.

Tolerances (all as max |cuda - ref| / max |ref|, so that elements near zero do not turn a
rounding difference into a large relative error):
- float32 forward / MambaLRP gradients vs the CPU float32 op: 1e-5. Both accumulate in
  float32; they differ in the order of the sums over states and in exp (the GPU computes
  exp2 of a prescaled A with a 2-ulp hardware approximation), each ~1e-7 relative per step,
  decayed by exp(dt A) < 1 along the sequence.
- float32 exact gradients vs the CPU float64 op: 1e-4. dA, dB, dC, dD and ddelta_bias are
  sums over batch x seqlen (and dims of a group) terms, accumulated by float32 atomics in
  any order.
- float16 / bfloat16 inputs vs the CPU float32 op on the same rounded inputs: the CUDA
  kernels compute in float32 and round only what they store (out, out_y, du, dz) to the
  input dtype, and the saved out_y the backward reads is rounded too. One rounding is
  2^-11 (fp16) or 2^-8 (bf16) relative; the tolerances 2e-3 and 1.6e-2 allow about four
  such roundings at the output's scale.
"""
import itertools

import pytest
import torch

from scan_reference import make_scan_inputs, rel_err, selective_scan_ref
from zero_size import ZERO_SIZE_SHAPES, check_zero_size

# Every test of the module is skipped without a CUDA device. (A module-level skip marker
# rather than pytest.skip(allow_module_level=True): with the latter pytest collects no test
# and exits with status 5, which ctest counts as a failure.)
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")
F32 = torch.float32  # the inputs are made in float32 on the CPU
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


WEIGHTS = ("A", "D", "delta_bias")


def to(x, dtype=None, device=None, weight_dtype=torch.float32):
    out = {}
    for k, v in x.items():
        if v is None:
            out[k] = None
            continue
        dt = weight_dtype if k in WEIGHTS else (dtype or v.dtype)
        out[k] = v.to(device=device or v.device, dtype=dt)
    return out


def grads(ops, x, rule, w, v, softplus=True):
    leaves = {k: (t.detach().clone().requires_grad_(True) if t is not None else None) for k, t in x.items()}
    out, last = ops.selective_scan(**leaves, delta_softplus=softplus, return_last_state=True, rule=rule)
    loss = (out * w.to(out)).sum() + (last * v.to(last)).sum()
    loss.backward()
    return {k: (t.grad if t is not None else None) for k, t in leaves.items()}, out, last


# (batch, dim, seqlen, dstate, groups): seqlen 1, dstate 1, groups > 1, chunk crossings
# (64-step chunks for dstate <= 16), dstate above one warp (two register layouts), and the
# largest dstate.
SHAPES = [
    (1, 3, 1, 1, None),
    (2, 4, 7, 16, None),
    (2, 6, 130, 5, 3),
    (3, 5, 65, 17, None),
    (1, 8, 20, 40, 2),
    (2, 16, 300, 16, 1),
    (1, 4, 100, 33, None),
    (1, 3, 37, 256, None),
    # The shapes the C++ CUDA test ran before it was cut to the API check
    # (tests/cpp/test_cuda_scan.cpp): B and C 4-d with one group, chunk crossings with 3 and
    # 2 groups, the largest dstate as 4-d.
    (2, 16, 200, 16, 1),
    (1, 6, 1, 1, 1),
    (2, 12, 77, 5, 3),
    (1, 8, 130, 40, 2),
    (1, 4, 40, 256, 1),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_z", [True, False])
def test_forward_float32_matches_cpu(ops, shape, with_z):
    x = make_scan_inputs(*shape, seed=1, dtype=F32)
    if not with_z:
        x["z"] = None
    out_c, last_c = ops.selective_scan(**x, delta_softplus=True, return_last_state=True)
    out_g, last_g = ops.selective_scan(**to(x, device=CUDA), delta_softplus=True, return_last_state=True)
    assert out_g.is_cuda and out_g.dtype == torch.float32
    assert last_g.dtype == torch.float32
    assert rel_err(out_g, out_c) < 1e-5
    assert rel_err(last_g, last_c) < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
def test_mambalrp_gradients_match_cpu(ops, shape):
    x = make_scan_inputs(*shape, seed=2, dtype=F32)
    batch, dim, seqlen, dstate, _ = shape
    w, v = torch.randn(batch, dim, seqlen), torch.randn(batch, dim, dstate)
    gc, _, _ = grads(ops, x, "mambalrp", w, v)
    gg, _, _ = grads(ops, to(x, device=CUDA), "mambalrp", w, v)
    gg2, _, _ = grads(ops, to(x, device=CUDA), "mambalrp", w, v)
    for k in NAMES:
        assert (gc[k] is None) == (gg[k] is None), k
        if gc[k] is None:
            continue
        assert rel_err(gg[k], gc[k]) < 1e-5, k
        assert torch.equal(gg[k], gg2[k]), f"{k}: MambaLRP backward must be deterministic"
    for k in ("delta", "A", "B", "C", "D", "delta_bias"):
        assert gg[k] is None, f"{k} gets no gradient under the MambaLRP rule"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("softplus", [True, False])
def test_exact_gradients_match_cpu_float64(ops, shape, softplus):
    x = make_scan_inputs(*shape, seed=3, dtype=F32)
    if not softplus:
        x["delta"] = x["delta"].abs() * 0.2  # dt >= 0 without softplus: a stable scan
        x["delta_bias"] = x["delta_bias"].abs()
    batch, dim, seqlen, dstate, _ = shape
    w, v = torch.randn(batch, dim, seqlen), torch.randn(batch, dim, dstate)
    gc, out_c, _ = grads(ops, to(x, dtype=torch.float64, weight_dtype=torch.float64), "exact", w.double(), v.double(),
                         softplus)
    gg, out_g, _ = grads(ops, to(x, device=CUDA), "exact", w, v, softplus)
    assert rel_err(out_g, out_c) < 1e-5
    for k in NAMES:
        assert gg[k] is not None, k
        assert gg[k].dtype == x[k].dtype and gg[k].shape == x[k].shape, k
        assert rel_err(gg[k], gc[k]) < 1e-4, k


def test_exact_gradients_against_naive_reference(ops):
    # Independent of the CPU kernels: autograd through the Python-loop reference, float64.
    x = make_scan_inputs(2, 6, 90, 12, 2, seed=4, dtype=F32)
    w = torch.randn(2, 6, 90)
    gg, _, _ = grads(ops, to(x, device=CUDA), "exact", w, torch.zeros(2, 6, 12))
    x64 = {k: v.double().requires_grad_(True) for k, v in x.items()}
    (selective_scan_ref(**x64, delta_softplus=True) * w.double()).sum().backward()
    for k in NAMES:
        assert rel_err(gg[k], x64[k].grad) < 1e-4, k


def test_mambalrp_against_naive_reference(ops):
    x = make_scan_inputs(2, 6, 90, 12, 2, seed=5, dtype=F32)
    w = torch.randn(2, 6, 90)
    gg, _, _ = grads(ops, to(x, device=CUDA), "mambalrp", w, torch.zeros(2, 6, 12))
    x64 = {k: v.double().requires_grad_(True) for k, v in x.items()}
    (selective_scan_ref(**x64, delta_softplus=True, mambalrp=True) * w.double()).sum().backward()
    for k in ("u", "z"):
        assert rel_err(gg[k], x64[k].grad) < 1e-5, k


TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["mambalrp", "exact"])
def test_half_precision_inputs(ops, dtype, rule):
    x = make_scan_inputs(2, 16, 300, 16, None, seed=6, dtype=F32)
    rounded = to(to(x, dtype=dtype), dtype=torch.float32)  # what the CUDA kernels see, in float32
    w, v = torch.randn(2, 16, 300), torch.randn(2, 16, 16)
    w = w.to(dtype).float()  # the CUDA loss multiplies by w in dtype
    gc, out_c, last_c = grads(ops, rounded, rule, w, v)
    gg, out_g, last_g = grads(ops, to(x, dtype=dtype, device=CUDA), rule, w, v)
    assert out_g.dtype == dtype and last_g.dtype == torch.float32
    tol = TOL[dtype]
    assert rel_err(out_g, out_c) < tol
    assert rel_err(last_g, last_c) < 1e-4  # float32 state throughout
    keys = ("u", "z") if rule == "mambalrp" else NAMES
    for k in keys:
        assert gg[k].dtype == (torch.float32 if k in WEIGHTS else dtype), k
        # Weight gradients are sums of many float32 terms of rounded factors: same tolerance.
        assert rel_err(gg[k], gc[k]) < tol, k


@pytest.mark.parametrize("shape", [
    pytest.param((2, 1536, 256, 16), id="Mamba-130M layer"),  # d_inner 1536, d_state 16; 256 tokens
    pytest.param((2, 768, 197, 16), id="Vim-S"),  # d_inner 768, d_state 16; 196 patches + class token
])
def test_model_shape(ops, shape):
    # Real model shapes, named as in tests/python/test_selective_scan.py.
    x = make_scan_inputs(*shape, seed=7, dtype=F32)
    out_c, last_c = ops.selective_scan(**x, delta_softplus=True, return_last_state=True)
    out_g, last_g = ops.selective_scan(**to(x, device=CUDA), delta_softplus=True, return_last_state=True)
    assert rel_err(out_g, out_c) < 1e-5
    assert rel_err(last_g, last_c) < 1e-5


def test_noncontiguous_inputs(ops):
    x = make_scan_inputs(2, 8, 50, 16, None, seed=8, dtype=F32)
    g = to(x, device=CUDA)
    # (B, L, D) storage seen as (B, D, L): the last dim is not contiguous -> copied.
    g["u"] = g["u"].transpose(1, 2).contiguous().transpose(1, 2)
    g["B"] = g["B"][:, :, :].transpose(1, 2).contiguous().transpose(1, 2)
    out_c = ops.selective_scan(**x, delta_softplus=True)[0]
    out_g = ops.selective_scan(**g, delta_softplus=True)[0]
    assert rel_err(out_g, out_c) < 1e-5


def test_errors(ops):
    x = to(make_scan_inputs(1, 4, 8, 4, None, dtype=F32), device=CUDA)
    mixed = dict(x, delta=x["delta"].cpu())
    with pytest.raises(RuntimeError, match="delta.*one device"):
        ops.selective_scan(**mixed)
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        ops.selective_scan(**to(x, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="A must have dtype"):
        ops.selective_scan(**to(x, dtype=torch.float16, weight_dtype=torch.float16))
    with pytest.raises(RuntimeError, match="dstate"):
        ops.selective_scan(**to(make_scan_inputs(1, 2, 4, 257, None, dtype=F32), device=CUDA))
    with pytest.raises(RuntimeError, match='rule must be "exact" or "mambalrp"'):
        ops.selective_scan(**x, rule="lrp")
    if torch.cuda.device_count() > 1:
        other = dict(x, A=x["A"].to("cuda:1"))
        with pytest.raises(RuntimeError, match="one device"):
            ops.selective_scan(**other)


def test_empty_sequence(ops):
    x = to(make_scan_inputs(2, 3, 0, 4, None, dtype=F32), device=CUDA)
    out, last = ops.selective_scan(**x, delta_softplus=True, return_last_state=True)
    assert out.shape == (2, 3, 0)
    assert torch.count_nonzero(last).item() == 0


def test_torchscript_on_cuda(ops):
    class M(torch.nn.Module):
        def forward(self, u, delta, A, B, C):
            return torch.ops.mamba_lrp.selective_scan(u, delta, A, B, C, None, None, None, True, False, "mambalrp")[0]

    x = to(make_scan_inputs(1, 4, 30, 8, None, seed=9, dtype=F32), device=CUDA)
    m = torch.jit.script(M())
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    torch.testing.assert_close(m(*args), M()(*args))


@pytest.mark.parametrize("shape", [(2, 4, 7, 16, None), (3, 5, 65, 17, None), (1, 8, 130, 40, 2), (1, 3, 37, 256, None)])
@pytest.mark.parametrize("rule", ["mambalrp", "exact"])
def test_backward_without_z(ops, shape, rule):
    # No gate: the backward kernels' z-less path (no out_y, no dz). MambaLRP against the CPU
    # float32 op (1e-5, as above), exact against the CPU float64 op (1e-4, as above).
    x = make_scan_inputs(*shape, seed=10, dtype=F32)
    x["z"] = None
    batch, dim, seqlen, dstate, _ = shape
    w, v = torch.randn(batch, dim, seqlen), torch.randn(batch, dim, dstate)
    ref = to(x, dtype=torch.float64, weight_dtype=torch.float64) if rule == "exact" else x
    wr, vr = (w.double(), v.double()) if rule == "exact" else (w, v)
    gc, _, _ = grads(ops, ref, rule, wr, vr)
    gg, _, _ = grads(ops, to(x, device=CUDA), rule, w, v)
    tol = 1e-4 if rule == "exact" else 1e-5
    keys = NAMES if rule == "exact" else ("u",)
    for k in keys:
        if k == "z":
            continue
        assert gg[k] is not None, k
        assert rel_err(gg[k], gc[k]) < tol, k
    assert gg["z"] is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["mambalrp", "exact"])
@pytest.mark.parametrize("dstate,groups", [(33, None), (40, 2), (64, 1)])
def test_half_precision_wide_state(ops, dtype, rule, dstate, groups):
    # dstate >= 33: the wide-state register layout (more than one state per lane), in half
    # precision. Same reference and tolerances as test_half_precision_inputs.
    x = make_scan_inputs(2, 8, 150, dstate, groups, seed=11, dtype=F32)
    rounded = to(to(x, dtype=dtype), dtype=torch.float32)
    w, v = torch.randn(2, 8, 150).to(dtype).float(), torch.randn(2, 8, dstate)
    gc, out_c, last_c = grads(ops, rounded, rule, w, v)
    gg, out_g, last_g = grads(ops, to(x, dtype=dtype, device=CUDA), rule, w, v)
    tol = TOL[dtype]
    assert rel_err(out_g, out_c) < tol
    assert rel_err(last_g, last_c) < 1e-4  # float32 state throughout
    for k in (("u", "z") if rule == "mambalrp" else NAMES):
        assert rel_err(gg[k], gc[k]) < tol, k


@pytest.mark.parametrize("shape", ZERO_SIZE_SHAPES)
@pytest.mark.parametrize("with_z", [True, False])
@pytest.mark.parametrize("rule", ["mambalrp", "exact"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_size_inputs(ops, shape, with_z, rule, dtype):
    # The CUDA launchers return before any pointer check when nothing is to be scanned, and
    # zero the outputs that have elements (zero_size.py).
    check_zero_size(ops, shape, "cuda", with_z, rule, dtype)
    torch.cuda.synchronize()
