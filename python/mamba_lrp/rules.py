"""The LRP rule ops as functions: forward identical to the plain layer, backward replaced by
the rule (csrc/ops/ops.h documents each). x * x.grad after a backward through them is the
rule's input relevance."""
from ._library import ops


def silu_identity(x):
    """silu(x); backward g * sigmoid(x) (silu(x)/x held constant)."""
    return ops().silu_identity(x)


def gate_half(a, b):
    """a * b; backward gives each factor half (g_a = g b / 2, g_b = g a / 2)."""
    return ops().gate_half(a, b)


def rms_norm_identity(x, weight=None, eps=1e-5):
    """x * rsqrt(mean(x^2, -1) + eps) * weight; backward with the rsqrt held constant."""
    return ops().rms_norm_identity(x, weight, float(eps))


def layer_norm_identity(x, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last dim; backward with rsqrt(var + eps) held constant (LN rule)."""
    return ops().layer_norm_identity(x, weight, bias, float(eps))


def linear_gamma(x, weight, bias=None, gamma=0.25):
    """F.linear with the generalized gamma rule in the backward (gamma = 0: plain gradient)."""
    return ops().linear_gamma(x, weight, bias, float(gamma))


def conv1d_gamma(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, gamma=0.25):
    """F.conv1d with the generalized gamma rule in the backward."""
    return ops().conv1d_gamma(x, weight, bias, _ints(stride, 1), _ints(padding, 1), _ints(dilation, 1),
                              int(groups), float(gamma))


def conv2d_gamma(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, gamma=0.25):
    """F.conv2d with the generalized gamma rule in the backward."""
    return ops().conv2d_gamma(x, weight, bias, _ints(stride, 2), _ints(padding, 2), _ints(dilation, 2),
                              int(groups), float(gamma))


def linear_epsilon(x, weight, bias=None, epsilon=1e-6):
    """F.linear with the epsilon rule in the backward."""
    return ops().linear_epsilon(x, weight, bias, float(epsilon))


def conv1d_epsilon(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, epsilon=1e-6):
    """F.conv1d with the epsilon rule in the backward."""
    return ops().conv1d_epsilon(x, weight, bias, _ints(stride, 1), _ints(padding, 1), _ints(dilation, 1),
                                int(groups), float(epsilon))


def conv2d_epsilon(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, epsilon=1e-6):
    """F.conv2d with the epsilon rule in the backward."""
    return ops().conv2d_epsilon(x, weight, bias, _ints(stride, 2), _ints(padding, 2), _ints(dilation, 2),
                                int(groups), float(epsilon))


def _ints(v, n):
    return [int(v)] * n if isinstance(v, int) else [int(i) for i in v]
