"""Zero-size inputs of the selective scan (seqlen 0, batch 0, dim 0), checked on one device.

What the op must return follows from the definitions, not from any kernel: with no step the
state never moves from h_0 = 0, so last_state is zeros; out, out_y, du, dz, ddelta are
(batch, dim, seqlen) tensors with no element; the exact rule's weight gradients dA, dD,
ddelta_bias and dB, dC are sums over no terms, so zeros of their inputs' shapes (dB and dC
have elements when only dim is 0)."""
import torch

# (batch, dim, seqlen, dstate, groups)
ZERO_SIZE_SHAPES = [(2, 3, 0, 4, 1), (0, 3, 5, 4, 1), (2, 0, 5, 4, 1), (0, 0, 0, 4, 1), (2, 4, 0, 40, 2)]


def zero_size_inputs(batch, dim, seqlen, dstate, groups, device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)
    w = lambda *s: torch.randn(*s, generator=g).to(device=device)  # float32 weights
    return dict(u=r(batch, dim, seqlen), delta=r(batch, dim, seqlen), A=-w(dim, dstate).abs() - 0.5,
                B=r(batch, groups, dstate, seqlen), C=r(batch, groups, dstate, seqlen), D=w(dim),
                z=r(batch, dim, seqlen), delta_bias=w(dim))


def check_zero_size(ops, shape, device, with_z, rule, dtype=torch.float32):
    batch, dim, seqlen, dstate, groups = shape
    x = zero_size_inputs(*shape, device=device, dtype=dtype)
    if not with_z:
        x["z"] = None
    leaves = {k: (v.clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    out, last = ops.selective_scan(**leaves, delta_softplus=True, return_last_state=True, rule=rule)
    assert out.shape == (batch, dim, seqlen) and out.device.type == torch.device(device).type
    assert last.shape == (batch, dim, dstate)
    assert torch.count_nonzero(last).item() == 0, "no step: the state stays h_0 = 0"
    (out.sum() + (last * 2).sum()).backward()
    grads = {k: (v.grad if v is not None else None) for k, v in leaves.items()}
    assert grads["u"].shape == (batch, dim, seqlen)
    if with_z:
        assert grads["z"].shape == (batch, dim, seqlen)
    if rule == "exact":
        for k in ("delta", "A", "B", "C", "D", "delta_bias"):
            assert grads[k] is not None and grads[k].shape == x[k].shape, k
            assert torch.count_nonzero(grads[k]).item() == 0, f"{k}: a sum over no terms is 0"
    # The internal ops directly too: the forward and both backwards with a last-state gradient.
    out2, y2, last2 = ops._selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                              x["delta_bias"], True, True)
    assert out2.shape == (batch, dim, seqlen) and torch.count_nonzero(last2).item() == 0
    g = ops._selective_scan_bwd(torch.zeros_like(out2), torch.ones_like(last2), x["u"], x["delta"], x["A"], x["B"],
                                x["C"], x["D"], x["z"], x["delta_bias"], y2, True, rule)
    assert g[0].shape == (batch, dim, seqlen)
    if rule == "exact":
        for t in g[1:]:
            if t is not None:
                assert torch.count_nonzero(t).item() == 0
