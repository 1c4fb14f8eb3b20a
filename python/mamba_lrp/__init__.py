"""mamba_lrp from Python: the op library built by CMake (build/libmamba_lrp.so, found and
loaded here), a drop-in for mamba_ssm's selective_scan_fn with the MambaLRP backward as an
option, the LRP rule ops, and explain() through the C++ explainer.

    import sys; sys.path.insert(0, "python")       # from the repository root
    from mamba_lrp import selective_scan_fn
    out = selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, rule="mambalrp")
"""
from ._library import library_path, ops
from .explain import explain
from .rules import (conv1d_epsilon, conv1d_gamma, conv2d_epsilon, conv2d_gamma, gate_half, layer_norm_identity,
                    linear_epsilon, linear_gamma, rms_norm_identity, silu_identity)
from .scan import selective_scan_fn

ops()  # load the library on import: a missing build is reported here, with what to do

__all__ = [
    "selective_scan_fn", "explain", "silu_identity", "gate_half", "rms_norm_identity", "layer_norm_identity",
    "linear_gamma", "conv1d_gamma", "conv2d_gamma", "linear_epsilon", "conv1d_epsilon", "conv2d_epsilon",
    "library_path", "ops",
]
