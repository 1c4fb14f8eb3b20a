"""One CUDA launch over more than 2^31 elements per (batch, dim, seqlen) tensor: every offset
past the 32-bit range must be computed in 64 bits. The rows repeat a few one-row problems
(row d holds the data of row d mod P), so each row of the big launch is checked against the
same kernel run on its one-row problem. Forward and MambaLRP backward, without z (about
35 GB of float32 on the GPU). Skipped without a CUDA device with enough memory (ctest label
cuda).

Tolerance, max |big row - one-row result| / max |one-row result|: 1e-6. Both are the same
kernel on the same numbers; only the order of the sums over the state could differ with the
block layout (float32, ~1e-7). A wrong 32-bit offset reads or writes another row, or
outside the tensor: an O(1) error (or a fault).
"""
import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_properties(0).total_memory < 80 * 2**30,
    reason="needs a CUDA device with 80 GiB or more")

P = 5                    # distinct rows
DIM = 2**17 + 3          # DIM * SEQLEN = 2^31 + 49152 > 2^31
SEQLEN = 2**14
DSTATE = 4


def one_row_problems(device):
    g = torch.Generator().manual_seed(21)
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(u=r(P, SEQLEN), delta=0.5 * r(P, SEQLEN) - 1.0, A=-torch.exp(0.5 * r(P, DSTATE)),
                B=r(1, DSTATE, SEQLEN), C=r(1, DSTATE, SEQLEN), D=r(P), delta_bias=0.3 * r(P),
                gout=r(P, SEQLEN))


def tile_rows(t):
    """(P, ...) -> (DIM, ...): row d is row d mod P, dense."""
    reps = (DIM + P - 1) // P
    return t.repeat(reps, *([1] * (t.dim() - 1)))[:DIM].contiguous()


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_launch_past_2_pow_31_elements(ops):
    cuda = torch.device("cuda")
    p = {k: v.to(cuda) for k, v in one_row_problems(cuda).items()}
    # One-row results of the same kernels.
    ref_out, ref_du = [], []
    for i in range(P):
        row = lambda t: t[i:i + 1].unsqueeze(0)  # (1, 1, L)
        w = lambda t: t[i:i + 1]
        out, _, _ = ops._selective_scan_fwd(row(p["u"]), row(p["delta"]), w(p["A"]), p["B"], p["C"], w(p["D"]), None,
                                            w(p["delta_bias"]), True, False)
        du = ops._selective_scan_bwd(row(p["gout"]), None, row(p["u"]), row(p["delta"]), w(p["A"]), p["B"], p["C"],
                                     w(p["D"]), None, w(p["delta_bias"]), None, True, "mambalrp")[0]
        ref_out.append(out[0, 0])
        ref_du.append(du[0, 0])

    u, delta = tile_rows(p["u"]).unsqueeze(0), tile_rows(p["delta"]).unsqueeze(0)  # (1, DIM, L)
    assert u.numel() > 2**31
    A, D, bias = tile_rows(p["A"]), tile_rows(p["D"]), tile_rows(p["delta_bias"])
    out, _, _ = ops._selective_scan_fwd(u, delta, A, p["B"], p["C"], D, None, bias, True, False)
    torch.cuda.synchronize()
    for i in range(P):
        assert rel(out[0, i::P], ref_out[i]) < 1e-6, f"forward, rows {i} mod {P}"
    assert rel(out[0, -1], ref_out[(DIM - 1) % P]) < 1e-6, "forward, the last row"
    del out
    gout = tile_rows(p["gout"]).unsqueeze(0)
    du = ops._selective_scan_bwd(gout, None, u, delta, A, p["B"], p["C"], D, None, bias, None, True, "mambalrp")[0]
    torch.cuda.synchronize()
    for i in range(P):
        assert rel(du[0, i::P], ref_du[i]) < 1e-6, f"MambaLRP backward, rows {i} mod {P}"
    assert rel(du[0, -1], ref_du[(DIM - 1) % P]) < 1e-6, "MambaLRP backward, the last row"
