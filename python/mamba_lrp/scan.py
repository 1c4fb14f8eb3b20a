"""selective_scan_fn: mamba_ssm's function of the same name (same arguments, same return
convention), on every device the library serves, with the LRP rule as an option."""
from ._library import ops

RULES = ("exact", "mambalrp")


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, *, rule="exact"):
    """The selective scan of Mamba, as mamba_ssm.ops.selective_scan_interface.selective_scan_fn.

    u, delta, z: (batch, dim, seqlen); A: (dim, dstate); B, C: (batch, dstate, seqlen),
    (batch, groups, dstate, seqlen) or (dim, dstate) (constant in time); D, delta_bias: (dim,).
    u, delta, B, C, z in float32, float16 or bfloat16 (computed in float32; outputs in u's
    dtype) or float64 (CPU); A, D, delta_bias in float32 (float64 with float64 inputs).
    A constant B or C may be float32 with float16/bfloat16 inputs (rounded to their dtype).
    Complex A, B, C are refused (the scan is real-valued).

    Returns out (batch, dim, seqlen), or (out, last_state) with return_last_state
    (last_state: (batch, dim, dstate), float32 for float16/bfloat16 inputs).

    rule="exact" (default): true gradients for every input, as mamba_ssm.
    rule="mambalrp": the same forward; the backward of MambaLRP (DESIGN.md §1): exp(dt A),
    dt B and C held constant so only u (and z through the gate's half rule with the SiLU
    identity rule) get gradients; delta, A, B, C, D, delta_bias get none.
    """
    if rule not in RULES:
        raise ValueError(f"selective_scan_fn: rule must be one of {RULES}, got {rule!r}")
    out, last_state = ops().selective_scan(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                           bool(return_last_state), rule)
    return (out, last_state) if return_last_state else out
