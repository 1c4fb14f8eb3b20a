"""selective_scan against the naive reference in scan_reference.py."""
import itertools

import pytest
import torch

from scan_reference import make_scan_inputs, rel_err, selective_scan_ref


# (batch, dim, seqlen, dstate, groups) — seqlen 1, dstate 1, groups > 1, chunks crossed
# (the CPU kernel works in 64-step chunks and 16-state lanes), Mamba-like state size.
SHAPES = [
    (1, 3, 1, 1, None),
    (2, 4, 7, 16, None),
    (2, 6, 130, 5, 3),
    (3, 5, 65, 17, None),
    (1, 8, 20, 40, 2),
    (2, 4, 64, 16, 1),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("softplus", [False, True])
def test_forward_and_last_state_float64(ops, shape, softplus):
    batch, dim, seqlen, dstate, groups = shape
    x = make_scan_inputs(batch, dim, seqlen, dstate, groups)
    out, last = ops.selective_scan(**x, delta_softplus=softplus, return_last_state=True)
    ref, ref_last = selective_scan_ref(**x, delta_softplus=softplus, return_last_state=True)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, ref_last, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_D,with_z,with_bias", list(itertools.product([False, True], repeat=3)))
def test_optional_inputs(ops, with_D, with_z, with_bias):
    x = make_scan_inputs(2, 4, 33, 6, None, with_D=with_D, with_z=with_z, with_bias=with_bias)
    out, last = ops.selective_scan(**x, delta_softplus=True)
    assert last is None
    torch.testing.assert_close(out, selective_scan_ref(**x, delta_softplus=True), rtol=1e-12, atol=1e-12)


def test_forward_float32_matches_float64_reference(ops):
    # Mamba-like ranges; float32 with a ~1-ulp exp over 300 steps stays within 1e-5.
    x = make_scan_inputs(2, 16, 300, 16, None, dtype=torch.float64, seed=3)
    ref = selective_scan_ref(**x, delta_softplus=True)
    x32 = {k: (v.float() if v is not None else None) for k, v in x.items()}
    out = ops.selective_scan(**x32, delta_softplus=True)[0]
    assert out.dtype == torch.float32
    err = (out.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5, err


# Real model shapes, named as ggml's test-backend-ops names its cases (the C++ tests have the
# same in tests/cpp/test_scan_model_shapes.cpp): (batch, dim, seqlen, dstate).
# Mamba-130M: d_inner = 2 x 768, d_state 16; 128 tokens. Vim-S: d_inner = 2 x 384, d_state
# 16; 196 patches and the class token, batch 2.
MODEL_SHAPES = [
    pytest.param((1, 1536, 128, 16), id="Mamba-130M layer"),
    pytest.param((2, 768, 197, 16), id="Vim-S"),
]
# float32 against float64, as max |ours - ref| / max |ref|. Each step adds a few float32
# roundings (2^-24 = 6e-8 relative each; the CPU's exp within 2 ulp), and an error made at a
# step is carried on times exp(dt A) < 1, as the state is: errors add up over the steps a
# state remembers (all 197 where the decay is 0.9998) but are never amplified, and being of
# random sign they mostly cancel. Measured: at most 1.9e-7 (out, last state, du, dz; on each
# of the AVX-512, AVX2 and baseline loops, which ctest runs this file under). 1e-6, about 16
# roundings, leaves 5x.
MODEL_SHAPE_TOL = 1e-6


@pytest.mark.parametrize("shape", MODEL_SHAPES)
def test_model_shape_float32_against_float64_reference(ops, shape):
    """The CPU op in float32 at a real layer's shape, on inputs initialised as a Mamba layer
    is: the forward and last state, and the MambaLRP gradients du, dz, against the float64
    reference (its mambalrp=True graph has the same forward)."""
    batch, dim, seqlen, dstate = shape
    x = make_scan_inputs(batch, dim, seqlen, dstate, mamba_init=True, seed=3)
    g = torch.randn(batch, dim, seqlen, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x32 = {k: v.float().requires_grad_(k in ("u", "z")) for k, v in x.items()}
    x64 = {k: x32[k].detach().double().requires_grad_(k in ("u", "z")) for k in x}  # the rounded inputs
    ref, ref_last = selective_scan_ref(**x64, delta_softplus=True, return_last_state=True, mambalrp=True)
    (ref * g).sum().backward()

    out, last = ops.selective_scan(**x32, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.float32
    assert rel_err(out, ref) < MODEL_SHAPE_TOL
    assert rel_err(last, ref_last) < MODEL_SHAPE_TOL
    out = ops.selective_scan(**x32, delta_softplus=True, rule="mambalrp")[0]
    (out * g.float()).sum().backward()
    for k in ("u", "z"):
        assert rel_err(x32[k].grad, x64[k].grad) < MODEL_SHAPE_TOL, k


@pytest.mark.parametrize("shape", [(1, 2, 1, 1, None), (2, 3, 9, 3, None), (2, 4, 70, 2, 2), (1, 2, 5, 18, None)])
@pytest.mark.parametrize("rule", ["exact", "mambalrp"])
def test_gradcheck_exact_or_linear_in_u(ops, shape, rule):
    """exact: true gradients of every input (finite differences). mambalrp: y is linear
    in u for fixed constants, so gradcheck holds for u alone when z is absent."""
    batch, dim, seqlen, dstate, groups = shape
    x = make_scan_inputs(batch, dim, seqlen, dstate, groups, with_z=(rule == "exact"), seed=7)
    names = list(x) if rule == "exact" else ["u"]
    for n in names:
        if x[n] is not None:
            x[n].requires_grad_(True)

    def f(*args):
        kw = dict(x)
        kw.update(dict(zip(names, args)))
        out, last = ops.selective_scan(**kw, delta_softplus=True, return_last_state=True, rule=rule)
        return out, last

    torch.autograd.gradcheck(f, tuple(x[n] for n in names), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_z", [False, True])
def test_mambalrp_gradients_match_detach_reference(ops, shape, with_z):
    batch, dim, seqlen, dstate, groups = shape
    x = make_scan_inputs(batch, dim, seqlen, dstate, groups, with_z=with_z, seed=11)
    for v in x.values():
        if v is not None:
            v.requires_grad_(True)
    g = torch.randn(batch, dim, seqlen, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gl = torch.randn(batch, dim, dstate, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

    out, last = ops.selective_scan(**x, delta_softplus=True, return_last_state=True, rule="mambalrp")
    (out * g).sum().add_((last * gl).sum()).backward()
    ours = {k: (v.grad.clone() if v is not None and v.grad is not None else None) for k, v in x.items()}
    for v in x.values():
        if v is not None:
            v.grad = None

    ref, ref_last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True, mambalrp=True)
    (ref * g).sum().add_((ref_last * gl).sum()).backward()
    torch.testing.assert_close(ours["u"], x["u"].grad, rtol=1e-11, atol=1e-11)
    if with_z:
        torch.testing.assert_close(ours["z"], x["z"].grad, rtol=1e-11, atol=1e-11)
    # The constants get no gradient at all.
    for name in ["delta", "A", "B", "C", "D", "delta_bias"]:
        assert ours[name] is None, f"{name} received a gradient under the mambalrp rule"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_z", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
def test_mambalrp_backward_from_forward_factors(ops, shape, with_z, softplus):
    """Without the last state the CPU op keeps dt and the gate's factors from its forward and
    its MambaLRP backward reads those (no softplus, no sigmoid recomputed): same gradients as
    the detach reference, float64 to 1e-11 and float32 to 1e-5 of the largest (float32 with
    softplus only: these inputs' raw delta is mostly negative, so without softplus the states
    grow past float32's range)."""
    batch, dim, seqlen, dstate, groups = shape
    x = make_scan_inputs(batch, dim, seqlen, dstate, groups, with_z=with_z, seed=13)
    g = torch.randn(batch, dim, seqlen, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    grads = {}
    for dtype in (torch.float64, torch.float32) if softplus else (torch.float64,):
        xd = {k: (v.detach().to(dtype).requires_grad_(True) if v is not None else None) for k, v in x.items()}
        out = ops.selective_scan(**xd, delta_softplus=softplus, rule="mambalrp")[0]
        (out * g.to(dtype)).sum().backward()
        grads[dtype] = {k: v.grad for k, v in xd.items() if v is not None}
        for name in ["delta", "A", "B", "C", "D", "delta_bias"]:
            assert grads[dtype][name] is None, f"{name} received a gradient under the mambalrp rule"
    ref_in = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    ref = selective_scan_ref(**ref_in, delta_softplus=softplus, mambalrp=True)
    (ref * g).sum().backward()
    for name in ["u", "z"] if with_z else ["u"]:
        expect = ref_in[name].grad
        torch.testing.assert_close(grads[torch.float64][name], expect, rtol=1e-11, atol=1e-11)
        if softplus:
            err = (grads[torch.float32][name].double() - expect).abs().max() / expect.abs().max()
            assert err < 1e-5, (name, err)


def test_mambalrp_conserves_relevance_without_gate(ops):
    """Without D the SSM is linear in u with no bias: sum(u * du) = sum(out * g)."""
    x = make_scan_inputs(2, 5, 90, 8, None, with_D=False, with_z=False, with_bias=True, seed=2)
    x["u"].requires_grad_(True)
    out = ops.selective_scan(**x, delta_softplus=True, rule="mambalrp")[0]
    out.sum().backward()
    torch.testing.assert_close((x["u"] * x["u"].grad).sum(), out.sum(), rtol=1e-12, atol=1e-12)


def test_gate_rule_splits_relevance_in_half(ops):
    """With z: relevance on u (via y) plus relevance on z equals the output's, half each."""
    x = make_scan_inputs(1, 4, 50, 8, None, with_D=False, with_z=True, seed=4)
    x["u"].requires_grad_(True)
    x["z"].requires_grad_(True)
    out = ops.selective_scan(**x, delta_softplus=True, rule="mambalrp")[0]
    out.sum().backward()
    r_u = (x["u"] * x["u"].grad).sum()
    r_z = (x["z"] * x["z"].grad).sum()
    torch.testing.assert_close(r_u, 0.5 * out.sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r_z, 0.5 * out.sum(), rtol=1e-12, atol=1e-12)


def test_noncontiguous_inputs_are_copied(ops):
    x = make_scan_inputs(2, 4, 12, 5, None)
    ref = ops.selective_scan(**x, delta_softplus=True)[0]
    nc = dict(x)
    nc["u"] = x["u"].transpose(1, 2).contiguous().transpose(1, 2)  # last dim stride != 1
    nc["B"] = x["B"].transpose(1, 2).contiguous().transpose(1, 2)
    nc["z"] = torch.cat([x["z"], x["z"]], dim=-1)[..., ::2]  # step 2 in the last dim
    nc["z"] = x["z"].repeat_interleave(2, dim=-1)[..., ::2]
    assert nc["u"].stride(-1) != 1 and nc["z"].stride(-1) != 1
    torch.testing.assert_close(ops.selective_scan(**nc, delta_softplus=True)[0], ref, rtol=0, atol=0)


def test_inference_mode_and_no_grad(ops):
    x = make_scan_inputs(1, 3, 10, 4, None)
    ref = ops.selective_scan(**x)[0]
    with torch.inference_mode():
        torch.testing.assert_close(ops.selective_scan(**x)[0], ref, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ops.selective_scan(**x)[0], ref, rtol=0, atol=0)


def test_large_index_arithmetic_is_64bit(ops):
    """batch * dim * seqlen over 2^31 elements would overflow 32-bit offsets; too big to run
    here, so check a shape whose B offsets exceed 2^31 / dstate with modest memory."""
    x = make_scan_inputs(1, 2, 70000, 16, None, dtype=torch.float32, with_z=False, seed=9)
    out = ops.selective_scan(**x, delta_softplus=True)[0]
    assert torch.isfinite(out).all()


def _bad(x, **changes):
    y = dict(x)
    y.update(changes)
    return y


@pytest.mark.parametrize("change,words", [
    (lambda x: _bad(x, u=x["u"][0]), ["u", "(batch, dim, seqlen)"]),
    (lambda x: _bad(x, delta=x["delta"][..., :-1]), ["delta", "shape of u"]),
    (lambda x: _bad(x, A=x["A"][:-1]), ["A", "(dim, dstate)"]),
    (lambda x: _bad(x, B=x["B"][..., :-1]), ["B", "seqlen"]),
    (lambda x: _bad(x, C=x["C"][:, :-1]), ["C", "dstate"]),
    (lambda x: _bad(x, B=x["B"].unsqueeze(1)), ["B and C", "groups"]),
    (lambda x: _bad(x, B=x["B"].reshape(2, 1, 5, 12).expand(2, 3, 5, 12), C=x["C"].reshape(2, 1, 5, 12).expand(2, 3, 5, 12)),
     ["groups", "divide dim"]),
    (lambda x: _bad(x, z=x["z"][:, :2]), ["z", "shape of u"]),
    (lambda x: _bad(x, D=x["D"][:2]), ["D", "(dim)"]),
    (lambda x: _bad(x, delta_bias=x["delta_bias"].reshape(1, 4)), ["delta_bias", "(dim)"]),
    (lambda x: _bad(x, B=x["B"].float()), ["B", "dtype of u"]),
    (lambda x: _bad(x, A=x["A"].float()), ["A", "dtype"]),
    # float16 inputs are accepted (test_selective_scan_fn.py), float16 weights are not
    (lambda x: {k: (v.half() if v is not None else None) for k, v in x.items()}, ["A", "must have dtype Float"]),
    (lambda x: {k: (v.int() if v is not None else None) for k, v in x.items()}, ["u", "float32, float64, float16"]),
    (lambda x: _bad(x, A=torch.zeros(4, 300, dtype=torch.float64), B=torch.zeros(2, 300, 12, dtype=torch.float64),
                    C=torch.zeros(2, 300, 12, dtype=torch.float64)), ["dstate", "256"]),
])
def test_bad_inputs_name_the_argument(ops, change, words):
    x = change(make_scan_inputs(2, 4, 12, 5, None))
    with pytest.raises(RuntimeError) as e:
        ops.selective_scan(**x)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_unknown_rule_is_refused(ops):
    x = make_scan_inputs(1, 2, 3, 2, None)
    for mode in [torch.no_grad, torch.enable_grad]:
        with mode(), pytest.raises(RuntimeError, match='rule must be "exact" or "mambalrp", got "lrp"'):
            ops.selective_scan(**x, rule="lrp")
