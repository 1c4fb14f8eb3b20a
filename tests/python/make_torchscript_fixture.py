"""Writes a scripted module that calls torch.ops.mamba_lrp.* (a small Mamba-style mixer
with the MambaLRP rules), with its example inputs and the eager outputs and relevance as
buffers. tests/cpp/test_torchscript.cpp loads it in a C++ program and must reproduce them.

usage: make_torchscript_fixture.py OUT.pt   (MAMBA_LRP_LIB names the op library)
"""
import os
import sys

import torch

from scan_reference import make_scan_inputs


class TinyMixer(torch.nn.Module):
    def __init__(self, dim: int = 6, dstate: int = 4, seqlen: int = 9, batch: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
        self.conv_w = torch.nn.Parameter(r(dim, 1, 4))
        self.conv_b = torch.nn.Parameter(r(dim))
        self.norm_w = torch.nn.Parameter(r(dim))
        # The scan's inputs (the conv's input x_in in the place of u).
        x = make_scan_inputs(batch, dim, seqlen, dstate, seed=1)
        self.A = torch.nn.Parameter(x["A"])
        self.D = torch.nn.Parameter(x["D"])
        self.dt_bias = torch.nn.Parameter(x["delta_bias"])
        self.register_buffer("x_in", x["u"])
        self.register_buffer("z_in", x["z"])
        self.register_buffer("delta_in", x["delta"])
        self.register_buffer("B_in", x["B"])
        self.register_buffer("C_in", x["C"])
        self.register_buffer("expected_out", torch.zeros(1, dtype=torch.float64))
        self.register_buffer("expected_relevance", torch.zeros(1, dtype=torch.float64))

    def forward(self, x, z):
        L = x.shape[-1]
        xc = torch.ops.mamba_lrp.conv1d_gamma(x, self.conv_w, self.conv_b, [1], [3], [1], x.shape[1], 0.25)[..., :L]
        u = torch.ops.mamba_lrp.silu_identity(xc)
        y, last = torch.ops.mamba_lrp.selective_scan(u, self.delta_in, self.A, self.B_in, self.C_in, self.D, z,
                                                     self.dt_bias, True, False, "mambalrp")
        return torch.ops.mamba_lrp.rms_norm_identity(y.transpose(1, 2), self.norm_w, 1e-5)


def main():
    torch.ops.load_library(os.environ["MAMBA_LRP_LIB"])
    m = TinyMixer()
    x = m.x_in.clone().requires_grad_(True)
    out = m(x, m.z_in)
    out.sum().backward()
    m.expected_out = out.detach()
    m.expected_relevance = (x * x.grad).detach()
    scripted = torch.jit.script(m)
    # the scripted module must agree with eager before it is handed to C++
    x2 = m.x_in.clone().requires_grad_(True)
    out2 = scripted(x2, m.z_in)
    out2.sum().backward()
    assert torch.equal(out2.detach(), m.expected_out)
    assert torch.allclose(x2 * x2.grad, m.expected_relevance, rtol=0, atol=0)
    scripted.save(sys.argv[1])


if __name__ == "__main__":
    main()
