"""torch.ops.mamba_lrp.ssd_scan (the Mamba-2 / SSD scan) against ssd_loop below: a float64
loop over time written from the recurrence S_t = exp(Δ_t A_h) S_{t-1} + Δ_t x_t ⊗ B_t,
y_t = S_t C_t + D_h x_t, with head h reading group h // (H / G). It shares nothing with the
op (no chunks, no transposes). Covers the per-step (chunk_size 1) and chunked kernels, the
automatic choice, the ATen composite (the other devices' path, run here on the CPU), both
backward rules, groups 1/2/4, dstate 256, lengths across chunk boundaries, the last state,
strided inputs and the refusals; and the chunked kernel at the edges of its blocking
(register tiles, panels, padding, head blocks per thread, the streamed output).

Tolerances: float64 results at 1e-11 relative (a few hundred products and exps summed in a
different order); float32 kernels at 2e-4 relative of the float64 result (float32 rounding
accumulated over up to 70 steps and 256-term dot products)."""
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
import mamba_lrp  # noqa: E402,F401  (loads the library)

ssd_scan = torch.ops.mamba_lrp.ssd_scan
transpose_op = torch.ops.mamba_lrp._ssd_scan_transpose
COMPOSITE = torch._C.DispatchKey.CompositeExplicitAutograd


def ssd_loop(x, delta, A, B, C, D=None, mambalrp=False):
    """float64 reference; x (b, H, P, L). Returns y (b, H, P, L) and the last state
    (b, H, P, N). With mambalrp, exp(ΔA), Δ, B, C and D are detached (y linear in x)."""
    b, H, P, L = x.shape
    G, N = B.shape[1], B.shape[2]
    group = torch.arange(H) // (H // G)
    S = x.new_zeros(b, H, P, N)
    ys = []
    for t in range(L):
        decay = torch.exp(delta[:, :, t] * A)                     # (b, H)
        dt = delta[:, :, t]
        Bt, Ct = B[:, group, :, t], C[:, group, :, t]              # (b, H, N)
        if mambalrp:
            decay, dt, Bt, Ct = decay.detach(), dt.detach(), Bt.detach(), Ct.detach()
        S = decay[..., None, None] * S + (dt[..., None] * x[..., t])[..., None] * Bt[:, :, None, :]
        ys.append((S * Ct[:, :, None, :]).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + (D.detach() if mambalrp else D)[None, :, None, None] * x
    return y, S


def inputs(batch=2, heads=4, head_dim=3, seqlen=13, groups=1, dstate=5, dtype=torch.float64, seed=0):
    """Mamba-2-like values: Δ = softplus of N(0,1) (positive, ~0.3-2), A in [-4, -0.5]."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return dict(
        x=rn(batch, heads, head_dim, seqlen),
        delta=torch.nn.functional.softplus(rn(batch, heads, seqlen)),
        A=-(0.5 + 3.5 * torch.rand(heads, generator=g, dtype=torch.float64)),
        B=rn(batch, groups, dstate, seqlen), C=rn(batch, groups, dstate, seqlen),
        D=rn(heads),
    )


def cast(d, dtype):
    return {k: v.to(dtype) for k, v in d.items()}


def close(a, b, rtol):
    scale = b.abs().max().clamp_min(1e-30)
    assert (a.double() - b.double()).abs().max() <= rtol * scale, ((a.double() - b.double()).abs().max(), scale)


CHUNKS = [1, 4, 5, 16, 0]   # per step; chunks that cut L = 13 unevenly; one chunk > L; automatic


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_forward_and_last_state_float64(groups, chunk):
    d = inputs(groups=groups)
    y_ref, s_ref = ssd_loop(**d)
    y, last = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], True, "exact", chunk)
    close(y, y_ref, 1e-11)
    close(last, s_ref, 1e-11)
    # The channel-major (batch, heads * head_dim, seqlen) layout gives the same, in that shape.
    x3 = d["x"].reshape(2, -1, 13)
    y3, _ = ssd_scan(x3, d["delta"], d["A"], d["B"], d["C"], d["D"], False, "mambalrp", chunk)
    assert y3.shape == x3.shape
    close(y3.reshape(y.shape), y_ref, 1e-11)


@pytest.mark.parametrize("chunk", [1, 8, 64])
def test_float32_against_float64_loop(chunk):
    d = inputs(groups=2, seqlen=70, dstate=16, head_dim=8)
    y_ref, s_ref = ssd_loop(**d)
    f = cast(d, torch.float32)
    y, last = ssd_scan(f["x"], f["delta"], f["A"], f["B"], f["C"], f["D"], True, "exact", chunk)
    assert y.dtype == torch.float32 and last.dtype == torch.float32
    close(y, y_ref, 2e-4)
    close(last, s_ref, 2e-4)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dstate_256(chunk, dtype):
    d = inputs(batch=1, heads=2, head_dim=3, seqlen=9, groups=1, dstate=256, seed=3)
    y_ref, s_ref = ssd_loop(**d)
    f = cast(d, dtype)
    y, last = ssd_scan(f["x"], f["delta"], f["A"], f["B"], f["C"], f["D"], True, "exact", chunk)
    tol = 1e-11 if dtype == torch.float64 else 2e-4
    close(y, y_ref, tol)
    close(last, s_ref, tol)


def test_strong_decay_and_no_D():
    """Δ A down to -60 per step: the chunked form's exp(cum_i - cum_j) stays finite."""
    d = inputs(seqlen=20, seed=5)
    d["delta"] = d["delta"] * 10
    d["A"] = d["A"] * 2
    y_ref, _ = ssd_loop(d["x"], d["delta"], d["A"], d["B"], d["C"])
    for chunk in (1, 8):
        for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-4)):
            f = cast(d, dtype)
            y, _ = ssd_scan(f["x"], f["delta"], f["A"], f["B"], f["C"], None, False, "exact", chunk)
            assert torch.isfinite(y).all()
            close(y, y_ref, tol)


def test_strided_inputs():
    """B and C as views into one (batch, x + B + C, seqlen) tensor, as the model has them, and
    an x whose last dimension is not contiguous (copied)."""
    d = inputs(groups=2)
    b, G, N, L = d["B"].shape
    xbc = torch.cat([d["x"].reshape(b, -1, L), d["B"].reshape(b, -1, L), d["C"].reshape(b, -1, L)], 1)
    I = d["x"].shape[1] * d["x"].shape[2]
    Bv = xbc[:, I:I + G * N].reshape(b, G, N, L)
    Cv = xbc[:, I + G * N:].reshape(b, G, N, L)
    assert not Bv.is_contiguous()
    x_t = d["x"].transpose(-1, -2).contiguous().transpose(-1, -2)
    y_ref, _ = ssd_loop(**d)
    for chunk in (1, 4):
        y, _ = ssd_scan(x_t, d["delta"], d["A"], Bv, Cv, d["D"], False, "exact", chunk)
        close(y, y_ref, 1e-11)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("chunk", [1, 4, 5, 0])
def test_mambalrp_backward_is_the_transpose(groups, chunk):
    d = inputs(groups=groups)
    g = torch.Generator().manual_seed(11)
    gy = torch.randn(d["x"].shape, generator=g, dtype=torch.float64)
    gs = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    # Reference: autograd of the loop with everything but x detached.
    xr = d["x"].clone().requires_grad_()
    y_ref, s_ref = ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], mambalrp=True)
    (dx_ref,) = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), [xr])
    leaves = {k: v.clone().requires_grad_() for k, v in d.items()}
    y, last = ssd_scan(leaves["x"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], True,
                       "mambalrp", chunk)
    grads = torch.autograd.grad((y * gy).sum() + (last * gs).sum(), list(leaves.values()), allow_unused=True)
    close(grads[0], dx_ref, 1e-11)
    assert all(gr is None for gr in grads[1:]), "mambalrp gives no gradient to delta, A, B, C, D"
    # Without the last state's gradient too.
    (dx_ref2,) = torch.autograd.grad((ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], True)[0] * gy).sum(),
                                     [xr])
    close(transpose_op(gy, None, d["delta"], d["A"], d["B"], d["C"], d["D"], chunk), dx_ref2, 1e-11)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("chunk", [1, 5, 0])
def test_exact_backward(groups, chunk):
    d = inputs(groups=groups, seqlen=11)
    g = torch.Generator().manual_seed(12)
    gy = torch.randn(d["x"].shape, generator=g, dtype=torch.float64)
    gs = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    ref = {k: v.clone().requires_grad_() for k, v in d.items()}
    y_ref, s_ref = ssd_loop(**ref)
    want = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), list(ref.values()))
    got_leaves = {k: v.clone().requires_grad_() for k, v in d.items()}
    y, last = ssd_scan(*got_leaves.values(), True, "exact", chunk)
    got = torch.autograd.grad((y * gy).sum() + (last * gs).sum(), list(got_leaves.values()))
    for name, a, b in zip(d, got, want):
        close(a, b, 1e-10)


@pytest.mark.parametrize("groups", [1, 4])
def test_composite_path(groups):
    """The ATen composite (the path of every device without a kernel), called on the CPU."""
    d = inputs(groups=groups)
    y_ref, s_ref = ssd_loop(**d)
    y, last = ssd_scan.default._op_dk(COMPOSITE, d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], True,
                                      "mambalrp", 4)
    close(y, y_ref, 1e-11)
    close(last, s_ref, 1e-11)
    gy = torch.randn(d["x"].shape, dtype=torch.float64)
    gs = torch.randn(s_ref.shape, dtype=torch.float64)
    xr = d["x"].clone().requires_grad_()
    y2, s2 = ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], mambalrp=True)
    (dx_ref,) = torch.autograd.grad((y2 * gy).sum() + (s2 * gs).sum(), [xr])
    for chunk in (4, 5, 16):
        dx = transpose_op.default._op_dk(COMPOSITE, gy, gs, d["delta"], d["A"], d["B"], d["C"], d["D"], chunk)
        close(dx, dx_ref, 1e-11)


def test_automatic_choice_and_long_sequences():
    """chunk_size 0 is the per-step form below 16 steps and chunks of 64 from there on (the
    faster form measured at each length); at L = 300 the chunked form (5 chunks of 64, the
    last one partial) agrees with the per-step form and with the loop."""
    d = inputs(batch=1, heads=2, head_dim=4, seqlen=300, dstate=8, seed=7)
    y_ref, _ = ssd_loop(**d)
    y0, _ = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"])
    y1, _ = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], False, "exact", 1)
    y64, _ = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], False, "exact", 64)
    assert torch.equal(y0, y64)
    close(y1, y_ref, 1e-11)
    close(y64, y_ref, 1e-11)
    for L, per_step in ((15, True), (16, False)):
        s = {k: (v[..., :L] if k in ("x", "delta", "B", "C") else v) for k, v in d.items()}
        y_auto, _ = ssd_scan(s["x"], s["delta"], s["A"], s["B"], s["C"], s["D"])
        y_form, _ = ssd_scan(s["x"], s["delta"], s["A"], s["B"], s["C"], s["D"], False, "exact", 1 if per_step else 64)
        assert torch.equal(y_auto, y_form), L


# ---- The chunked CPU kernel at the edges of its blocking (kernels/cpu/ssd_scan_gemm.h):
# products in register tiles of up to 4 vectors (16 floats / 8 doubles each with AVX-512,
# half that with AVX2 and baseline; ctest runs this file under each) by 6, 8, 12 or 24 rows
# with remainders of 8, 4, 2, 1 rows; b's panel in blocks of 16 KiB (64 steps of a 4-vector
# tile); time padded to whole vectors; one task per (batch, group, block of heads); chunks
# in super-chunks of at most 384 KiB of the group's C Bᵀ, Vr and Viᵀ.

# (chunk, seqlen, head_dim, dstate): chunks of 2, 15, 16, 17 (around one float vector), 40
# (3 vectors), 64 (4: one full tile), 100 (7: a 4- and a 3-vector tile); the last chunk
# partial except where the chunk divides L; head_dim 1, 7, 13, 64 (row remainders); dstate
# 5, 33, 130 (not whole vectors; 130 = two full panels and 2 more rows).
EDGES = [(2, 9, 13, 5), (15, 47, 7, 33), (16, 48, 13, 20), (17, 50, 1, 16), (40, 97, 13, 33), (64, 150, 64, 130),
         (100, 230, 7, 130), (64, 64, 13, 8)]


def check_forward_and_transpose_float64(d, chunk, grad_seed):
    """The forward with the last state, and the transpose with a last-state gradient (random
    cotangents from grad_seed), at `chunk` against the float64 loop and its autograd: 1e-11."""
    xr = d["x"].clone().requires_grad_()
    y_ref, s_ref = ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], mambalrp=True)
    y, last = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], True, "mambalrp", chunk)
    close(y, y_ref, 1e-11)
    close(last, s_ref, 1e-11)
    g = torch.Generator().manual_seed(grad_seed)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    gs = torch.randn(last.shape, generator=g, dtype=torch.float64)
    (dx_ref,) = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), [xr])
    close(transpose_op(gy, gs, d["delta"], d["A"], d["B"], d["C"], d["D"], chunk), dx_ref, 1e-11)


@pytest.mark.parametrize("chunk, seqlen, head_dim, dstate", EDGES)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_chunked_blocking_edges_float64(chunk, seqlen, head_dim, dstate, groups):
    """8 heads: 8, 4 or 2 per group sharing B and C; batch 2; forward with the last state,
    and the transpose with a last-state gradient, against the float64 loop (autograd of the
    loop for the transpose)."""
    d = inputs(batch=2, heads=8, head_dim=head_dim, seqlen=seqlen, groups=groups, dstate=dstate, seed=chunk + seqlen)
    check_forward_and_transpose_float64(d, chunk, grad_seed=1)


@pytest.mark.parametrize("chunk", [16, 33, 64])
def test_chunked_float32_mamba2_like(chunk):
    """float32 at a Mamba-2 head's width (head_dim 64, dstate 128, 4 heads in one group) over
    3+ chunks: 2e-4 of the float64 loop's largest value, forward and transpose."""
    d = inputs(batch=1, heads=4, head_dim=64, seqlen=150, groups=1, dstate=128, seed=chunk)
    xr = d["x"].clone().requires_grad_()
    y_ref, s_ref = ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], mambalrp=True)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gs = torch.randn(s_ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (dx_ref,) = torch.autograd.grad((y_ref * gy).sum() + (s_ref * gs).sum(), [xr])
    f = cast(d, torch.float32)
    y, last = ssd_scan(f["x"], f["delta"], f["A"], f["B"], f["C"], f["D"], True, "exact", chunk)
    close(y, y_ref, 2e-4)
    close(last, s_ref, 2e-4)
    dx = transpose_op(gy.float(), gs.float(), f["delta"], f["A"], f["B"], f["C"], f["D"], chunk)
    close(dx, dx_ref, 2e-4)


def test_chunked_super_chunks_float64():
    """dstate 128 in float64: the group's part of a chunk of 64 takes 160 KiB, so the kernel
    keeps 2 chunks at a time (super-chunks); 1000 steps = 8 super-chunks, the last chunk
    partial. Forward with the last state, transpose with a last-state gradient."""
    d = inputs(batch=1, heads=4, head_dim=8, seqlen=1000, groups=2, dstate=128, seed=21)
    check_forward_and_transpose_float64(d, 64, grad_seed=6)


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_chunked_threads_split_heads(threads):
    """With fewer (batch, group) pairs than threads the kernel splits each group's heads into
    blocks (some blocks empty with 3 and 5 threads); the result is the loop's either way."""
    d = inputs(batch=1, heads=8, head_dim=5, seqlen=37, groups=2, dstate=9, seed=threads)
    y_ref, s_ref = ssd_loop(**d)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    xr = d["x"].clone().requires_grad_()
    (dx_ref,) = torch.autograd.grad((ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], True)[0] * gy).sum(),
                                    [xr])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y, last = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], True, "exact", 8)
        dx = transpose_op(gy, None, d["delta"], d["A"], d["B"], d["C"], d["D"], 8)
    finally:
        torch.set_num_threads(before)
    close(y, y_ref, 1e-11)
    close(last, s_ref, 1e-11)
    close(dx, dx_ref, 1e-11)


def test_chunked_non_contiguous_views():
    """x a slice of a wider tensor (head and channel strides not those of its shape), delta a
    slice along heads, B and C views into one tensor, and the output gradient a transposed
    copy (last dimension not contiguous: the op copies it)."""
    d = inputs(batch=2, heads=4, head_dim=6, seqlen=70, groups=2, dstate=12, seed=9)
    b, H, P, L = d["x"].shape
    wide = torch.randn(b, H, P + 3, L, dtype=torch.float64)
    wide[:, :, 1:P + 1] = d["x"]
    xv = wide[:, :, 1:P + 1]
    dwide = torch.randn(b, 2 * H, L, dtype=torch.float64)
    dwide[:, ::2] = d["delta"]
    dv = dwide[:, ::2]
    bc = torch.cat([d["B"], d["C"]], 2)
    Bv, Cv = bc[:, :, :12], bc[:, :, 12:]
    assert not (xv.is_contiguous() or dv.is_contiguous() or Bv.is_contiguous())
    xr = d["x"].clone().requires_grad_()
    y_ref, _ = ssd_loop(xr, d["delta"], d["A"], d["B"], d["C"], d["D"], mambalrp=True)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (dx_ref,) = torch.autograd.grad((y_ref * gy).sum(), [xr])
    gy_t = gy.transpose(-1, -2).contiguous().transpose(-1, -2)
    for chunk in (16, 64):
        y, _ = ssd_scan(xv, dv, d["A"], Bv, Cv, d["D"], False, "exact", chunk)
        close(y, y_ref, 1e-11)
        close(transpose_op(gy_t, None, dv, d["A"], Bv, Cv, d["D"], chunk), dx_ref, 1e-11)


def test_chunked_streamed_output():
    """An output of at least 2 MiB is written with non-temporal stores; seqlen 2051 puts the
    rows of out off the vector alignment (a scalar prologue per row), float64."""
    d = inputs(batch=1, heads=2, head_dim=64, seqlen=2051, groups=1, dstate=4, seed=13)
    assert d["x"].numel() * 8 >= 2 << 20
    y_ref, s_ref = ssd_loop(**d)
    y, last = ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], True, "exact", 64)
    close(y, y_ref, 1e-11)
    close(last, s_ref, 1e-11)


def good():
    return inputs()


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(x=d["x"].float()), "delta must have x's dtype"),
    (lambda d: [d.update({k: v.half()}) for k, v in list(d.items())], "x must be float32 or float64"),
    (lambda d: [d.update({k: v.long()}) for k, v in list(d.items())], "x must be float32 or float64"),
    (lambda d: d.update(delta=d["delta"][:, :3]), r"x must be \(batch, heads \* head_dim, seqlen\) or"),
    (lambda d: d.update(delta=d["delta"][0]), r"delta must be \(batch, heads, seqlen\)"),
    (lambda d: d.update(x=d["x"].reshape(2, 13, 12)), r"x must be .*seqlen"),
    (lambda d: d.update(x=d["x"].reshape(2, 12, 13)[:, :10]), r"x must be \(batch, heads \* head_dim, seqlen\)"),
    (lambda d: d.update(A=d["A"][:3]), r"A must be \(heads\) = \(4\)"),
    (lambda d: d.update(D=d["D"][None]), r"D must be \(heads\) = \(4\)"),
    (lambda d: d.update(B=d["B"][0]), r"B must be \(batch, groups, dstate, seqlen\)"),
    (lambda d: d.update(B=d["B"][..., :12], C=d["C"][..., :12]), r"B must be \(batch, groups, dstate, seqlen\)"),
    (lambda d: d.update(B=d["B"].expand(2, 3, 5, 13), C=d["C"].expand(2, 3, 5, 13)), "groups \\(3\\) must divide"),
    (lambda d: d.update(C=d["C"][:, :, :4]), "C must have B's shape"),
    (lambda d: d.update(C=d["C"].float()), "C must have x's dtype"),
    (lambda d: d.update(delta=d["delta"][..., :0], x=d["x"][..., :0], B=d["B"][..., :0], C=d["C"][..., :0]),
     "at least one head and one step"),
])
def test_bad_arguments(change, words):
    d = good()
    change(d)
    for chunk in (1, 4):
        with pytest.raises(RuntimeError, match=words):
            ssd_scan(d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], False, "exact", chunk)
    with pytest.raises(RuntimeError, match=words):
        ssd_scan.default._op_dk(COMPOSITE, d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], False, "exact", 4)


def test_bad_rule_chunk_and_state_gradient():
    d = good()
    args = (d["x"], d["delta"], d["A"], d["B"], d["C"], d["D"], False)
    with pytest.raises(RuntimeError, match='rule must be "exact" or "mambalrp", got "lrp"'):
        ssd_scan(*args, "lrp", 0)
    for chunk in (-1, 1025):
        with pytest.raises(RuntimeError, match="chunk_size must be 0 .automatic., 1 .per step. or 2 .. 1024"):
            ssd_scan(*args, "exact", chunk)
    with pytest.raises(RuntimeError, match=r"grad_last_state must be \(batch, heads, head_dim, dstate\)"):
        transpose_op(d["x"], torch.zeros(2, 4, 3, 4, dtype=torch.float64), d["delta"], d["A"], d["B"], d["C"],
                     d["D"], 4)
    x = d["x"].clone().requires_grad_()
    with pytest.raises(RuntimeError, match='rule must be "exact" or "mambalrp"'):
        ssd_scan(x, d["delta"], d["A"], d["B"], d["C"], d["D"], False, "MambaLRP", 0)
