"""The Python tests' one selective-scan input generator (make_scan_inputs) and one
reference (selective_scan_ref): an independent, deliberately naive selective scan written
from the equations in DESIGN.md §1 (a float64-capable loop over time with full states,
vectorised over batch, dim and state only). The C++ tests have the same pair in
tests/cpp/scan_reference.h.

h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t ;  y_t = C_t . h_t + D u_t ;  out = y * silu(z)
with dt = softplus(delta + delta_bias) when delta_softplus.

`mambalrp=True` applies the MambaLRP rules by detaching: exp(dt A), dt B and C are
constants (so only u, and D's skip, carry gradient), the gate gives each factor half the
gradient and the gate's SiLU uses the identity rule (silu(z)/z constant).
"""
import math

import torch
import torch.nn.functional as F


def make_scan_inputs(batch, dim, seqlen, dstate, groups=None, dtype=torch.float64, with_D=True, with_z=True,
                     with_bias=True, seed=0, mamba_init=False):
    """selective_scan's keyword arguments, random, on the CPU, drawn in `dtype`.

    B and C are (batch, dstate, seqlen), or (batch, groups, dstate, seqlen) when groups is
    given. Ranges: u, B, C, D, z ~ N(0, 1); by default Mamba-like A = -exp(0.5 N(0, 1))
    (around -1) and dt = softplus(delta + delta_bias) around 0.3 (delta = 0.5 N(0, 1) - 1,
    delta_bias = 0.3 N(0, 1)). mamba_init: A and dt as a Mamba layer is initialised,
    A[d, n] = -(n + 1) (A_log = log(1..dstate)) and delta_bias = softplus^-1(dt0) with dt0
    log-uniform in [1e-3, 1e-1] (dt_proj.bias), delta = 0.5 N(0, 1): decays exp(dt A) from
    about 2e-4 to 0.9998, so some channels remember the whole sequence.
    """
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    bc_shape = (batch, dstate, seqlen) if groups is None else (batch, groups, dstate, seqlen)

    def bias():
        if not mamba_init:
            return 0.3 * r(dim)
        lo, hi = math.log(1e-3), math.log(1e-1)
        dt0 = torch.exp(torch.rand(dim, generator=g, dtype=dtype) * (hi - lo) + lo)
        return torch.log(torch.expm1(dt0))

    return dict(
        u=r(batch, dim, seqlen),
        delta=0.5 * r(batch, dim, seqlen) - (0.0 if mamba_init else 1.0),
        # Mamba's A = -exp(A_log): negative
        A=-torch.arange(1, dstate + 1, dtype=dtype).repeat(dim, 1) if mamba_init else -torch.exp(0.5 * r(dim, dstate)),
        B=r(*bc_shape),
        C=r(*bc_shape),
        D=r(dim) if with_D else None,
        z=r(batch, dim, seqlen) if with_z else None,
        delta_bias=bias() if with_bias else None,
    )


def rel_err(a, b):
    """max |a - b| / max |b| in float64: a relative error that does not blow up where b
    crosses zero."""
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()
    scale = b.abs().max().item() or 1.0
    return (a - b).abs().max().item() / scale


def silu_identity_ref(x):
    # forward silu(x), backward g * sigmoid(x)
    return x * torch.sigmoid(x).detach()


def gate_half_ref(a, b):
    # forward a*b, backward half to each factor
    return 0.5 * (a * b.detach()) + 0.5 * (a.detach() * b)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, mambalrp=False):
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    if B.dim() == 3:
        B = B.unsqueeze(1)
        C = C.unsqueeze(1)
    groups = B.shape[1]
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    # Time first, so that each step reads a contiguous slice, and channels split by group:
    # (seqlen, batch, groups, dim / groups, dstate).
    shape = (seqlen, batch, groups, dim // groups, dstate)
    time_first = lambda X: X.permute(-1, *range(X.dim() - 1)).contiguous()
    dt_t = time_first(dt).view(*shape[:4], 1)                               # (L, b, G, d/G, 1)
    u_t = time_first(u).view(*shape[:4], 1)                                 # (L, b, G, d/G, 1)
    B_t = time_first(B)[:, :, :, None, :]                                   # (L, b, G, 1, N)
    C_t = time_first(C)[:, :, :, None, :]                                   # (L, b, G, 1, N)
    # Every step's factors at once; only the recurrence below runs step by step.
    dA = torch.exp(dt_t * A.reshape(groups, dim // groups, dstate))         # exp(dt_t A)
    if mambalrp:  # exp(dt A), dt B and C constants
        dA, dt_B, B_t, C_t = dA.detach(), dt_t.detach(), B_t.detach(), C_t.detach()
    else:
        dt_B = dt_t
    dBu = (dt_B * u_t) * B_t                                                # dt_t B_t u_t
    h = u.new_zeros(shape[1:])
    hs = []
    for dA_t, dBu_t in zip(dA.unbind(0), dBu.unbind(0)):  # t = 0 .. seqlen-1
        h = dA_t * h + dBu_t                                                # (b, G, d/G, N)
        hs.append(h)
    if seqlen:
        y = torch.matmul(torch.stack(hs), C_t.transpose(-1, -2))               # C_t . h_t: (L, b, G, d/G, 1)
        y = y.view(seqlen, batch, dim).permute(1, 2, 0)                     # (b, d, L)
    else:
        y = u.new_zeros(batch, dim, 0)
    h = h.view(batch, dim, dstate)
    if D is not None:
        y = y + (D.detach() if mambalrp else D)[None, :, None] * u
    if z is not None:
        if mambalrp:
            y = gate_half_ref(y, silu_identity_ref(z))
        else:
            y = y * F.silu(z)
    return (y, h) if return_last_state else y
