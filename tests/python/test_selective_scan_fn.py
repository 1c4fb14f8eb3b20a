"""mamba_lrp.selective_scan_fn called the way mamba_ssm's tests call theirs: their shapes
(batch 2, dim 4, dstate 8, seqlen 128 .. 4096), their parameter grid (input dtype; B and C
time-varying or constant (dim, dstate); 1 or 2 groups; D, z, delta_bias, softplus,
return_last_state), their value ranges (A = -0.5 U[0, 1), delta = 0.5 U[0, 1), delta_bias =
0.5 U[0, 1), the rest N(0, 1)), and their checks (out, last state, every gradient), here on
the CPU and against port_scan_ref below: a float64 loop over time written from the
equations, which reads every B/C form directly (no conversion shared with the op). Plus
float64, the MambaLRP rule, and the refusals (complex, bad shapes, bad rule).
"""
import itertools
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
import mamba_lrp  # noqa: E402
from mamba_lrp import selective_scan_fn  # noqa: E402


def bc_at(X, t, dim):
    """B or C at step t as (batch or 1, dim, dstate), from any of the three forms."""
    if X.dim() == 2:                                  # (dim, dstate): constant in time
        return X[None]
    if X.dim() == 3:                                  # (batch, dstate, seqlen): one group
        return X[:, None, :, t]
    groups = X.shape[1]                               # (batch, groups, dstate, seqlen)
    return X[:, :, :, t].repeat_interleave(dim // groups, dim=1)


def port_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                  return_last_state=False, mambalrp=False):
    """float64 reference: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t,
    out = y silu(z). With mambalrp, exp(dt A), dt B and C (and D) are detached and the gate
    gives each factor half with silu(z)/z constant (DESIGN.md §1)."""
    f64 = lambda t: None if t is None else t.double()
    u, delta, A, B, C, D, z, delta_bias = map(f64, (u, delta, A, B, C, D, z, delta_bias))
    batch, dim, seqlen = u.shape
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(seqlen):
        decay = torch.exp(dt[:, :, t, None] * A)
        dt_B = dt[:, :, t, None] * bc_at(B, t, dim)
        c = bc_at(C, t, dim)
        if mambalrp:
            decay, dt_B, c = decay.detach(), dt_B.detach(), c.detach()
        h = decay * h + dt_B * u[:, :, t, None]
        ys.append((h * c).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + (D.detach() if mambalrp else D)[None, :, None] * u
    if z is not None:
        if mambalrp:
            s = z * torch.sigmoid(z).detach()                      # SiLU identity rule
            y = 0.5 * (y * s.detach()) + 0.5 * (y.detach() * s)    # gate half rule
        else:
            y = y * F.silu(z)
    return (y, h) if return_last_state else y


def port_inputs(seqlen, itype, variable_B, variable_C, groups, has_D, has_z, has_bias, seed=0,
                batch=2, dim=4, dstate=8):
    """mamba_ssm's test inputs (their shapes and ranges), drawn on the CPU: a constant B/C
    is (dim, dstate) in float32 (the weights' dtype), a time-varying one in the input dtype."""
    g = torch.Generator().manual_seed(seed)
    wtype = torch.float64 if itype == torch.float64 else torch.float32
    randn = lambda *s, dtype: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
    rand = lambda *s, dtype: torch.rand(*s, generator=g, dtype=torch.float64).to(dtype)

    def bc(variable):
        if not variable:
            return randn(dim, dstate, dtype=wtype)
        shape = (batch, dstate, seqlen) if groups == 1 else (batch, groups, dstate, seqlen)
        return randn(*shape, dtype=itype)

    return dict(
        u=randn(batch, dim, seqlen, dtype=itype),
        delta=0.5 * rand(batch, dim, seqlen, dtype=itype),
        A=-0.5 * rand(dim, dstate, dtype=wtype),
        B=bc(variable_B), C=bc(variable_C),
        D=randn(dim, dtype=wtype) if has_D else None,
        z=randn(batch, dim, seqlen, dtype=itype) if has_z else None,
        delta_bias=0.5 * rand(dim, dtype=wtype) if has_bias else None,
    )


def rel_err(a, b):
    """max |a - b| / max |b| (float64): no blow-up where b crosses zero."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


# Tolerances as max |ours - ref| / max |ref| against the float64 reference run on the very
# same (rounded) input values and upstream gradient, with the reasons (measured worst case
# over this file's cases in brackets):
# float64: the same math in the same precision, summed in another order over up to 4096
#   steps: a few thousand ulps at most (2^-52 = 2.2e-16 each) [4.8e-15].
# float32: each step adds a few float32 roundings (2^-24 = 6e-8) and the CPU's exp (within 2
#   ulp); A in [-0.5, 0) and dt in [0, 1] give decays up to 1 - 1e-7 that carry an error over
#   thousands of steps without shrinking it, and the gradients' sums run over seqlen: 2e-5
#   is ~300 roundings [4.7e-6].
# float16 / bfloat16: computed in float32, so the float32 error, plus the outputs and
#   gradients rounded to the input dtype (half an ulp of an element, at most that of the max:
#   the ulp at 1 is 2^-10 for float16, 2^-7 for bfloat16) and the backward reading the
#   forward's pre-gate y as saved in the input dtype (another half ulp, carried through the
#   gate into dz and the other gradients): 2 ulps [float16 6.1e-4 = 0.6 ulp, bfloat16
#   6.1e-3 = 0.8 ulp, both on gradients].
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 2 * 2.0 ** -10, torch.bfloat16: 2 * 2.0 ** -7}

# B/C forms: (variable_B, variable_C, groups); groups 2 only with both time-varying, as mamba_ssm.
BC_FORMS = [(True, True, 1), (True, True, 2), (False, True, 1), (True, False, 1), (False, False, 1)]
ITYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
FLAGS = list(itertools.product([False, True], repeat=4))  # has_D, has_z, has_bias, softplus


def bc_id(form):
    vb, vc, g = form
    return f"B{'var' if vb else 'const'}-C{'var' if vc else 'const'}-g{g}"


def run_and_compare(seqlen, itype, form, has_D, has_z, has_bias, softplus, rule="exact", return_last_state=True):
    x = port_inputs(seqlen, itype, *form, has_D, has_z, has_bias)
    grads_wanted = ("u", "z") if rule == "mambalrp" else tuple(k for k, v in x.items() if v is not None)
    ours_in = {k: (v.clone().requires_grad_(k in grads_wanted) if v is not None else None) for k, v in x.items()}
    ref_in = {k: (v.double().requires_grad_(k in grads_wanted) if v is not None else None) for k, v in x.items()}

    result = selective_scan_fn(**ours_in, delta_softplus=softplus, return_last_state=return_last_state, rule=rule)
    ref, ref_last = port_scan_ref(**ref_in, delta_softplus=softplus, return_last_state=True,
                                  mambalrp=rule == "mambalrp")
    tol = TOL[itype]
    out = result[0] if return_last_state else result
    assert out.dtype == itype and out.shape == x["u"].shape
    assert rel_err(out, ref) <= tol, ("out", rel_err(out, ref))
    if return_last_state:
        last = result[1]
        # last_state: float32 for float16/bfloat16 inputs (mamba_ssm's), u's dtype otherwise.
        assert last.dtype == (torch.float64 if itype == torch.float64 else torch.float32)
        assert rel_err(last, ref_last) <= tol, ("last_state", rel_err(last, ref_last))

    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(itype)
    out.backward(g)
    ref.backward(g.double())  # the same (rounded) upstream gradient
    for k in x:
        if x[k] is None:
            continue
        if k not in grads_wanted:
            assert ours_in[k].grad is None, k
            continue
        ours_g, ref_g = ours_in[k].grad, ref_in[k].grad
        assert ours_g is not None, k
        assert ours_g.dtype == x[k].dtype and ours_g.shape == x[k].shape, k
        # The weight gradients (dA, dD, d delta_bias, a constant B/C's) sum over batch and
        # seqlen in float32 and are returned in float32: the float32 tolerance, plus the
        # rounding of the inputs' gradients they are summed from.
        assert rel_err(ours_g, ref_g) <= tol, (k, rel_err(ours_g, ref_g))


@pytest.mark.parametrize("has_D,has_z,has_bias,softplus", FLAGS)
@pytest.mark.parametrize("form", BC_FORMS, ids=bc_id)
@pytest.mark.parametrize("itype", ITYPES, ids=str)
def test_grid_seqlen_128(itype, form, has_D, has_z, has_bias, softplus):
    """The full flag grid at mamba_ssm's shortest seqlen: out, last state, every gradient."""
    run_and_compare(128, itype, form, has_D, has_z, has_bias, softplus)


@pytest.mark.parametrize("seqlen", [256, 1024, 4096])
@pytest.mark.parametrize("form", [(True, True, 2), (False, False, 1)], ids=bc_id)
@pytest.mark.parametrize("itype", ITYPES, ids=str)
def test_longer_seqlens(itype, form, seqlen):
    """mamba_ssm's longer seqlens with every optional input (both group counts, both B/C
    forms): errors that grow with the sequence would show here."""
    run_and_compare(seqlen, itype, form, True, True, True, True)


@pytest.mark.parametrize("return_last_state", [False, True])
@pytest.mark.parametrize("has_D,has_z", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("form", BC_FORMS, ids=bc_id)
@pytest.mark.parametrize("itype", ITYPES, ids=str)
def test_mambalrp_rule_gradients(itype, form, has_D, has_z, return_last_state):
    """rule="mambalrp": the same forward; du and dz equal the reference's with exp(dt A),
    dt B, C, D detached and the gate / SiLU rules; no gradient for anything else. Without
    the last state the float32/float64 forward keeps the rule's factors (another backward)."""
    run_and_compare(300, itype, form, has_D, has_z, True, True, rule="mambalrp", return_last_state=return_last_state)


def spread_rows(t):
    """t as a view with gaps between its rows (dim 1 of a tensor twice as wide, every other
    row): same values, strides no dense layout has; the last dimension stays contiguous."""
    wide = torch.zeros(t.shape[0], 2 * t.shape[1], *t.shape[2:], dtype=t.dtype)
    wide[:, ::2] = t
    return wide[:, ::2]


@pytest.mark.parametrize("rule", ["exact", "mambalrp"])
@pytest.mark.parametrize("has_z", [False, True])
@pytest.mark.parametrize("form", [(True, True, 1), (False, False, 1), (False, True, 2), (True, False, 1)], ids=bc_id)
@pytest.mark.parametrize("itype", ITYPES, ids=str)
def test_strided_inputs_and_last_state_gradient(itype, form, has_z, rule):
    """u, delta, z, B, C as strided views (the kernels read and, for float16/bfloat16, convert
    each row through its strides; a constant B/C is read through its strides at every step),
    and a loss through the last state as well as the output (the backward starts from a
    state gradient): out, last state and the rule's gradients against the reference on the
    same values. A constant B/C here has the input dtype (the grid's are float32, which
    takes float16/bfloat16 calls to float32 at the op's entry), so the float16/bfloat16
    kernels read it themselves; with a time-varying partner of 2 groups that one is
    broadcast to dim groups."""
    x = port_inputs(200, itype, *form, True, has_z, True, seed=3)
    for k in ("B", "C"):
        if x[k].dim() == 2:
            x[k] = x[k].to(itype)
    grads_wanted = [k for k, v in x.items() if v is not None and (rule == "exact" or k in ("u", "z"))]
    ours_in = {k: (v.clone().requires_grad_(k in grads_wanted) if v is not None else None) for k, v in x.items()}
    views = {k: (spread_rows(v) if k in ("u", "delta", "z", "B", "C") and v is not None else v)
             for k, v in ours_in.items()}
    assert not views["u"].is_contiguous() and not views["B"].is_contiguous()
    ref_in = {k: (v.double().requires_grad_(k in grads_wanted) if v is not None else None) for k, v in x.items()}
    out, last = selective_scan_fn(**views, delta_softplus=True, return_last_state=True, rule=rule)
    ref, ref_last = port_scan_ref(**ref_in, delta_softplus=True, return_last_state=True, mambalrp=rule == "mambalrp")
    tol = TOL[itype]
    assert rel_err(out, ref) <= tol and rel_err(last, ref_last) <= tol
    gen = torch.Generator().manual_seed(11)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(itype)
    g_last = torch.randn(last.shape, generator=gen, dtype=torch.float64).to(last.dtype)
    torch.autograd.backward([out, last], [g, g_last])
    torch.autograd.backward([ref, ref_last], [g.double(), g_last.double()])
    for k in grads_wanted:
        assert ours_in[k].grad.dtype == x[k].dtype, k
        assert rel_err(ours_in[k].grad, ref_in[k].grad) <= tol, (k, rel_err(ours_in[k].grad, ref_in[k].grad))


def test_return_convention_and_defaults():
    x = port_inputs(64, torch.float32, True, True, 1, True, True, True)
    out = selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert torch.is_tensor(out)  # one tensor without return_last_state, as mamba_ssm
    pair = selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True,
                             True)
    assert isinstance(pair, tuple) and len(pair) == 2
    ref = port_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert rel_err(out, ref) <= TOL[torch.float32]


def test_constant_bc_gradient_is_summed_over_batch_and_time():
    """A constant B's gradient is one (dim, dstate) tensor: the time-varying gradient of the
    same values broadcast, summed over batch and seqlen (checked against the reference with
    B expanded by hand)."""
    x = port_inputs(100, torch.float64, False, True, 1, True, False, False)
    B = x["B"].clone().requires_grad_(True)
    out = selective_scan_fn(x["u"], x["delta"], x["A"], B, x["C"], x["D"])
    out.sum().backward()
    B_var = x["B"][None, :, :, None].expand(2, 4, 8, 100).clone().requires_grad_(True)  # (batch, dim groups, N, L)
    port_scan_ref(x["u"], x["delta"], x["A"], B_var, x["C"][:, None].expand(2, 4, 8, 100), x["D"]).sum().backward()
    torch.testing.assert_close(B.grad, B_var.grad.sum((0, 3)), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("which", ["A", "B", "C"])
def test_complex_refused_with_a_message(which):
    x = port_inputs(16, torch.float32, True, True, 1, False, False, False)
    x[which] = x[which].to(torch.complex64)
    with pytest.raises(RuntimeError, match=f"complex {which} .*not supported"):
        selective_scan_fn(**x)


@pytest.mark.parametrize("B_shape,words", [((4, 7), "constant B must have shape \\(dim, dstate\\) = \\(4, 8\\)"),
                                           ((3, 8), "constant B must have shape"),
                                           ((2, 8, 15), "B must have batch 2, dstate 8 and seqlen 16")])
def test_bad_bc_shapes_name_the_argument(B_shape, words):
    x = port_inputs(16, torch.float32, True, True, 1, False, False, False)
    x["B"] = torch.randn(*B_shape)
    with pytest.raises(RuntimeError, match=words):
        selective_scan_fn(**x)


def test_bad_rule_and_dtypes_refused():
    x = port_inputs(16, torch.float16, True, True, 1, True, False, False)
    with pytest.raises(ValueError, match="rule must be one of"):
        selective_scan_fn(**x, rule="lrp")
    bad = dict(x, A=x["A"].half())
    with pytest.raises(RuntimeError, match="A must have dtype Float"):
        selective_scan_fn(**bad)
    bad = dict(x, delta=x["delta"].float())
    with pytest.raises(RuntimeError, match="delta must have the dtype of u"):
        selective_scan_fn(**bad)


def test_library_found_by_the_package():
    assert mamba_lrp.library_path().is_file()
    assert hasattr(torch.ops.mamba_lrp, "selective_scan") and hasattr(torch.ops.mamba_lrp, "explain")


@pytest.mark.parametrize("itype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_conversions_are_exact(itype):
    """The CPU converts float16/bfloat16 rows itself: every finite bit pattern of the dtype
    goes in, and out = D u (dt = 0 keeps the state at 0, so y = D u in one float32 multiply)
    must come back rounded exactly as torch rounds that float32 product (nearest even,
    overflow to inf; subnormals both ways)."""
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    values = bits.view(itype)
    values = values[torch.isfinite(values.float())]
    n = values.numel() // 64 * 64
    u = values[:n].reshape(1, 64, n // 64)
    D = torch.linspace(0.3, 5.0, 64, dtype=torch.float32)  # products beyond the largest float16 too
    A = -torch.ones(64, 4)
    B = torch.randn(1, 4, u.shape[-1]).to(itype)
    zero = torch.zeros_like(u)
    out = selective_scan_fn(u, zero, A, B, B, D)
    expected = (0.0 + u.float() * D[None, :, None]).to(itype)  # y = C.h + D u with C.h = +0: -0 gives +0
    assert out.dtype == itype
    same = (out.view(torch.int16) == expected.view(torch.int16)) | (out.isnan() & expected.isnan())
    assert bool(same.all()), (out[~same][:5], expected[~same][:5])
