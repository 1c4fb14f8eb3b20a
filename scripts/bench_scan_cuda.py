#!/usr/bin/env python3
"""CUDA benchmark of the selective scan: forward and MambaLRP backward of the mamba_lrp
CUDA kernels at Mamba-130M layer shapes (batch 8, dim 1536, dstate 16, seqlen 512 ... 8192)
and at the Vim-S shape (batch 64, dim 768, dstate 16, seqlen 197), against a pure-PyTorch
implementation of the same math (a loop over time on the GPU).

Times: CUDA events around each call, after warm-up; the median of --reps runs.
GB/s: the bytes each kernel must move at least (every input read once, every output
written once), divided by the time; the peak is measured here as a device-to-device copy
(bytes read + bytes written per second), so "% peak" is against what this device reaches.

  python3 scripts/bench_scan_cuda.py [--lib build-gpu/libmamba_lrp.so] [--dtype float32|bfloat16|float16]
      [--max-seqlen 8192] [--ref-max-seqlen 8192] [--reps 10]

Before any timing, the kernels are checked against the PyTorch loop (forward, MambaLRP
du and dz; tolerance below) and the MambaLRP backward is run twice and compared bitwise:
the run fails (exit status 1, no figures) when either check fails.
"""
import argparse
import os
import pathlib
import statistics
import sys

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cuda_time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_peak_gbs(nbytes=1 << 30):
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_time_ms(lambda: dst.copy_(src), reps=10)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def make_inputs(batch, dim, seqlen, dstate, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    return dict(
        u=r(batch, dim, seqlen).to(dtype),                      # (B, D, L)
        delta=(0.5 * r(batch, dim, seqlen) - 1.0).to(dtype),    # (B, D, L)
        A=-torch.exp(0.5 * r(dim, dstate)),                     # (D, N) float32
        B=r(batch, dstate, seqlen).to(dtype),                   # (B, N, L)
        C=r(batch, dstate, seqlen).to(dtype),                   # (B, N, L)
        D=r(dim),                                               # (D) float32
        z=r(batch, dim, seqlen).to(dtype),                      # (B, D, L)
        delta_bias=0.3 * r(dim),                                # (D) float32
    )


# ---- pure PyTorch, same math (float32 state) -------------------------------------------
def ref_forward(u, delta, A, B, C, D, z, delta_bias):
    u, delta, B, C, z = (t.float() for t in (u, delta, B, C, z))
    dt = F.softplus(delta + delta_bias[None, :, None])      # (B, D, L)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])     # (B, D, N)
    ys = []
    for t in range(u.shape[2]):
        dtt = dt[:, :, t, None]                             # (B, D, 1)
        h = torch.exp(dtt * A) * h + (dtt * u[:, :, t, None]) * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) + D[None, :, None] * u
    return y * F.silu(z), y


def ref_lrp_backward(gout, y, delta, A, B, C, D, z, delta_bias):
    gout, y, delta, B, C, z = (t.float() for t in (gout, y, delta, B, C, z))
    dt = F.softplus(delta + delta_bias[None, :, None])
    s = torch.sigmoid(z)
    gy = 0.5 * gout * z * s                                  # gate half rule + SiLU identity
    dz = 0.5 * gout * y * s
    carry = gy.new_zeros(gy.shape[0], gy.shape[1], A.shape[1])
    du = torch.empty_like(gy)
    for t in range(gy.shape[2] - 1, -1, -1):
        g = carry + C[:, None, :, t] * gy[:, :, t, None]
        du[:, :, t] = dt[:, :, t] * (B[:, None, :, t] * g).sum(-1) + D * gy[:, :, t]
        carry = torch.exp(dt[:, :, t, None] * A) * g
    return du, dz


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.environ.get("MAMBA_LRP_LIB", str(ROOT / "build-gpu" / "libmamba_lrp.so")))
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--ref-max-seqlen", type=int, default=8192,
                    help="run the PyTorch loop only up to this seqlen (it is slow)")
    ap.add_argument("--max-seqlen", type=int, default=8192, help="the longest Mamba-130M sequence timed")
    ap.add_argument("--quick", action="store_true", help="fewer shapes (a smoke run)")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        raise SystemExit("bench_scan_cuda: no CUDA device")
    torch.ops.load_library(args.lib)
    ops = torch.ops.mamba_lrp
    dtype = getattr(torch, args.dtype)
    esize = torch.tensor([], dtype=dtype).element_size()
    prop = torch.cuda.get_device_properties(0)
    peak = copy_peak_gbs()
    print(f"device: {prop.name}, {prop.multi_processor_count} SMs; torch {torch.__version__}; inputs {args.dtype}")
    print(f"peak (device-to-device copy, read + write): {peak:.0f} GB/s")

    if not check_against_reference(ops, dtype):
        sys.exit(1)

    shapes = [("Mamba-130M", 8, 1536, L, 16) for L in (512, 1024, 2048, 4096, 8192) if L <= args.max_seqlen]
    shapes.append(("Vim-S", 64, 768, 197, 16))
    if args.quick:
        shapes = [shapes[0], shapes[-1]]

    hdr = (f"{'shape':<12}{'batch':>6}{'dim':>6}{'seqlen':>7} | {'fwd ms':>8}{'GB/s':>7}{'%peak':>6} | "
           f"{'lrp ms':>8}{'GB/s':>7}{'%peak':>6}{'lrp/fwd':>8} | {'ref fwd':>9}{'ref lrp':>9}{'x fwd':>7}{'x lrp':>7}")
    print(hdr)
    print("-" * len(hdr))
    for name, batch, dim, L, N in shapes:
        x = make_inputs(batch, dim, L, N, dtype)
        fwd = lambda: ops._selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                              x["delta_bias"], True, False)
        out, out_y, _ = fwd()
        gout = torch.randn_like(out)
        lrp = lambda: ops._selective_scan_bwd(gout, None, x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                              x["delta_bias"], out_y, True, "mambalrp")
        t_fwd = cuda_time_ms(fwd, args.reps)
        t_lrp = cuda_time_ms(lrp, args.reps)
        row = batch * dim * L * esize      # one (B, D, L) tensor
        bc = 2 * batch * N * L * esize     # B and C
        w = 3 * dim * 4 + dim * N * 4      # D, delta_bias, A
        bytes_fwd = 3 * row + bc + w + 2 * row           # u, delta, z in; out, out_y out
        bytes_lrp = 4 * row + bc + w + 2 * row           # gout, delta, z, out_y in; du, dz out
        gbs_f = bytes_fwd / (t_fwd * 1e-3) / 1e9
        gbs_l = bytes_lrp / (t_lrp * 1e-3) / 1e9
        ref = ""
        if L <= args.ref_max_seqlen:
            with torch.no_grad():
                r_fwd = cuda_time_ms(lambda: ref_forward(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                                         x["delta_bias"]), reps=1, warmup=1)
                r_lrp = cuda_time_ms(lambda: ref_lrp_backward(gout, out_y, x["delta"], x["A"], x["B"], x["C"], x["D"],
                                                              x["z"], x["delta_bias"]), reps=1, warmup=1)
            ref = f"{r_fwd:9.1f}{r_lrp:9.1f}{r_fwd / t_fwd:7.0f}{r_lrp / t_lrp:7.0f}"
        else:
            ref = f"{'-':>9}{'-':>9}{'-':>7}{'-':>7}"
        print(f"{name:<12}{batch:>6}{dim:>6}{L:>7} | {t_fwd:8.3f}{gbs_f:7.0f}{100 * gbs_f / peak:6.0f} | "
              f"{t_lrp:8.3f}{gbs_l:7.0f}{100 * gbs_l / peak:6.0f}{t_lrp / t_fwd:8.2f} | {ref}", flush=True)
        del x, out, out_y, gout
        torch.cuda.empty_cache()


# Tolerance of the check, max |kernel - loop| / max |loop|: float32 inputs, both accumulate in
# float32 in different orders (1e-4 leaves room over 300 steps); float16 / bfloat16 inputs,
# the kernels round out, du, dz to the input dtype (about four roundings of 2^-11 / 2^-8).
CHECK_TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def check_against_reference(ops, dtype):
    """The kernels against the PyTorch loop on one shape, and the MambaLRP backward run twice
    (bitwise equal: it has no atomics). Prints one line; False when a check fails."""
    x = make_inputs(2, 64, 300, 16, dtype)
    out, out_y, _ = ops._selective_scan_fwd(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                            x["delta_bias"], True, False)
    r_out, _ = ref_forward(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"])
    gout = torch.randn_like(out)
    lrp = lambda: ops._selective_scan_bwd(gout, None, x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                          x["delta_bias"], out_y, True, "mambalrp")
    first, second = lrp(), lrp()
    du, dz, du2, dz2 = first[0], first[6], second[0], second[6]
    r_du, r_dz = ref_lrp_backward(gout, out_y, x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"])
    err = lambda a, b: ((a.float() - b).abs().max() / b.abs().max()).item()
    errs = {"out": err(out, r_out), "du": err(du, r_du), "dz": err(dz, r_dz)}
    deterministic = torch.equal(du, du2) and torch.equal(dz, dz2)
    tol = CHECK_TOL[dtype]
    ok = all(e < tol for e in errs.values()) and deterministic
    print("check vs PyTorch loop: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()) +
          f" (tolerance {tol:.0e}); MambaLRP backward bitwise equal on two runs: {deterministic} -> "
          + ("PASS" if ok else "FAIL"), flush=True)
    return ok


if __name__ == "__main__":
    main()
