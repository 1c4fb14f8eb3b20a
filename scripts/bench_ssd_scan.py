"""Benchmark of the Mamba-2 (SSD) scan op on the CPU: the per-step form (chunk_size 1), the
chunked form (chunk_size 16 .. 128), the automatic choice (chunk_size 0) and the Mamba-1
selective_scan op fed the per-channel
form (A, Δ, D repeated over each head's channels, as models/mamba2.cpp ran it before), at the
shape of one Mamba-2 130M mixer (batch 1, 24 heads, head_dim 64, d_state 128, 1 group),
forward and MambaLRP backward, in one run. Not a test: it prints figures (minimum of
--repeat runs after one warm-up; ratios are within this run).

usage: scripts/bench_scan --ssd [--seqlens 512,2048,4096] [--chunks 16,32,64,128] [--threads 1] [--repeat 3]
"""
import argparse
import os
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import mamba_lrp  # noqa: E402,F401


def best_of(f, repeat):
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqlens", default="512,2048,4096")
    ap.add_argument("--chunks", default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batch, H, P, N, G = 1, 24, 64, 128, 1
    chunks = [int(c) for c in a.chunks.split(",")]
    print(f"ssd_scan, MAMBA_LRP_CPU_ISA={os.environ.get('MAMBA_LRP_CPU_ISA', 'unset (the best the CPU has)')}"
          f", {a.threads} thread(s), batch {batch}, heads {H}, head_dim {P}, d_state {N}, groups {G}; seconds "
          f"(min of {a.repeat}); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    for L in [int(s) for s in a.seqlens.split(",")]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, H * P, L, generator=g)
        delta = torch.nn.functional.softplus(torch.randn(batch, H, L, generator=g) - 2)
        A = -torch.linspace(1, 16, H)
        B = torch.randn(batch, G, N, L, generator=g)
        C = torch.randn(batch, G, N, L, generator=g)
        D = torch.ones(H)
        gy = torch.randn(batch, H * P, L, generator=g)
        fwd = lambda q: torch.ops.mamba_lrp.ssd_scan(x, delta, A, B, C, D, False, "mambalrp", q)
        bwd = lambda q: torch.ops.mamba_lrp._ssd_scan_transpose(gy, None, delta, A, B, C, D, q)
        row = {"per-step": (best_of(lambda: fwd(1), a.repeat), best_of(lambda: bwd(1), a.repeat))}
        for q in chunks:
            row[f"chunk {q}"] = (best_of(lambda: fwd(q), a.repeat), best_of(lambda: bwd(q), a.repeat))
        row["auto"] = (best_of(lambda: fwd(0), a.repeat), best_of(lambda: bwd(0), a.repeat))
        # The per-channel form through the Mamba-1 op (forward only: its MambaLRP backward
        # needs the autograd node).
        d_ch = delta.unsqueeze(2).expand(batch, H, P, L).reshape(batch, H * P, L)
        A_ch = A.unsqueeze(1).expand(H, P).reshape(H * P, 1).expand(H * P, N).contiguous()
        D_ch = D.repeat_interleave(P)
        per_channel = best_of(lambda: torch.ops.mamba_lrp.selective_scan(x, d_ch, A_ch, B, C, D_ch, None, None, False,
                                                                         False, "exact"), a.repeat)
        step_f, step_b = row["per-step"]
        print(f"L={L}: per-channel selective_scan forward {per_channel:.3f}", flush=True)
        for name, (f, b) in row.items():
            print(f"  {name:>9}: forward {f:.3f} ({step_f / f:.2f}x per-step, {per_channel / f:.2f}x per-channel), "
                  f"transpose {b:.3f} ({step_b / b:.2f}x per-step)", flush=True)


if __name__ == "__main__":
    main()
