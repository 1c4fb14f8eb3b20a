"""An independent, deliberately naive selective scan written from the equations in
DESIGN.md §1 (a Python loop over time with full states), used as the reference in tests.

h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t ;  y_t = C_t . h_t + D u_t ;  out = y * silu(z)
with dt = softplus(delta + delta_bias) when delta_softplus.

`mambalrp=True` applies the MambaLRP rules by detaching: exp(dt A), dt B and C are
constants (so only u, and D's skip, carry gradient), the gate gives each factor half the
gradient and the gate's SiLU uses the identity rule (silu(z)/z constant).
"""
import torch
import torch.nn.functional as F


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
    # expand groups to channels: (batch, dim, dstate, seqlen)
    Bx = B.repeat_interleave(dim // groups, dim=1)
    Cx = C.repeat_interleave(dim // groups, dim=1)
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    h = u.new_zeros(batch, dim, dstate)
    ys = []
    for t in range(seqlen):
        dA = torch.exp(dt[:, :, t, None] * A[None])           # (batch, dim, dstate)
        dB = dt[:, :, t, None] * Bx[:, :, :, t]                # (batch, dim, dstate)
        Ct = Cx[:, :, :, t]
        if mambalrp:
            dA, dB, Ct = dA.detach(), dB.detach(), Ct.detach()
        h = dA * h + dB * u[:, :, t, None]
        ys.append((h * Ct).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + (D.detach() if mambalrp else D)[None, :, None] * u
    if z is not None:
        if mambalrp:
            y = gate_half_ref(y, silu_identity_ref(z))
        else:
            y = y * F.silu(z)
    return (y, h) if return_last_state else y
