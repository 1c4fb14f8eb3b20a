"""Benchmark of the selective-scan op (CPU): forward and MambaLRP backward against a
pure-PyTorch loop of the same math, in one run. Not a test: it prints figures.

usage: scripts/bench_scan [--threads N] [--seqlens 128,512,...] [--repeat R] [--forms-only]

Then the input forms mamba_ssm's selective_scan_fn accepts, against float32 with time-varying
B/C, in the same run: float16 and bfloat16 inputs (computed in float32, converted on the way
in and out: the target is <= 1.2x the float32 time) and B/C constant in time (dim, dstate),
both or B alone.
"""
import argparse
import os
import pathlib
import statistics
import time

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]


def loaded_blas():
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in p or "lapack" in p or "mkl" in p:
                libs.add(os.path.realpath(p))
    return ", ".join(sorted(libs)) or "none found"


def make(batch, dim, seqlen, dstate, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(u=r(batch, dim, seqlen), delta=0.5 * r(batch, dim, seqlen) - 1.0, A=-torch.exp(0.5 * r(dim, dstate)),
                B=r(batch, dstate, seqlen), C=r(batch, dstate, seqlen), D=r(dim), z=r(batch, dim, seqlen),
                delta_bias=0.3 * r(dim))


def torch_loop(u, delta, A, B, C, D, z, delta_bias, mambalrp):
    """The same math as the op in plain PyTorch, one step at a time (what a Python
    implementation of MambaLRP without a fused kernel does)."""
    dt = F.softplus(delta + delta_bias[None, :, None])
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        dA = torch.exp(dt[:, :, t, None] * A)
        dBu = dt[:, :, t, None] * B[:, None, :, t]
        c = C[:, None, :, t]
        if mambalrp:
            dA, dBu, c = dA.detach(), dBu.detach(), c.detach()
        h = dA * h + dBu * u[:, :, t, None]
        ys.append((h * c).sum(-1))
    y = torch.stack(ys, -1) + D[None, :, None] * u
    if mambalrp:
        s = F.silu(z)
        return 0.5 * (y * s.detach()) + 0.5 * (y.detach() * (z * torch.sigmoid(z).detach()))
    return y * F.silu(z)


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(ops, name, batch, dim, seqlen, dstate, repeat, ref_repeat):
    x = make(batch, dim, seqlen, dstate)
    updates = batch * dim * dstate * seqlen

    def ours_fwd():
        with torch.no_grad():
            ops.selective_scan(**x, delta_softplus=True, rule="mambalrp")

    def ours_bwd_setup():
        u = x["u"].clone().requires_grad_(True)
        z = x["z"].clone().requires_grad_(True)
        kw = dict(x, u=u, z=z)
        out = ops.selective_scan(**kw, delta_softplus=True, rule="mambalrp")[0]
        return out

    def ref_fwd():
        with torch.no_grad():
            torch_loop(**x, mambalrp=True)

    t_fwd = timed(ours_fwd, repeat)
    t_bwd = statistics.median(
        [_time_backward(ours_bwd_setup) for _ in range(repeat)])
    r_fwd = timed(ref_fwd, ref_repeat)
    r_bwd = statistics.median(
        [_time_backward(lambda: torch_loop(**dict(x, u=x["u"].clone().requires_grad_(True),
                                                  z=x["z"].clone().requires_grad_(True)), mambalrp=True))
         for _ in range(ref_repeat)])
    print(f"{name:<26} {seqlen:>6} {t_fwd * 1e3:>9.2f} {t_bwd * 1e3:>9.2f} {t_bwd / t_fwd:>6.2f} "
          f"{updates / t_fwd / 1e9:>8.2f} {updates / t_bwd / 1e9:>8.2f} {r_fwd * 1e3:>10.1f} {r_bwd * 1e3:>10.1f} "
          f"{r_fwd / t_fwd:>8.0f}x {r_bwd / t_bwd:>8.0f}x", flush=True)


def _time_backward(make_out):
    out = make_out()
    g = torch.ones_like(out)
    t0 = time.perf_counter()
    out.backward(g)
    return time.perf_counter() - t0


def bench_forms(ops, batch, dim, seqlen, dstate, repeat):
    """Forward (no grad) and forward + exact backward of each input form, as ratios to the
    float32 time-varying form; the forms are timed interleaved, repeat times, medians."""
    x = make(batch, dim, seqlen, dstate)
    g = torch.Generator().manual_seed(1)
    const = dict(x, B=torch.randn(dim, dstate, generator=g), C=torch.randn(dim, dstate, generator=g))
    reduced = lambda dt: {k: (v.to(dt) if k in ("u", "delta", "z", "B", "C") else v) for k, v in x.items()}
    forms = [("float32, B/C (batch, N, L)", x), ("float16", reduced(torch.float16)),
             ("bfloat16", reduced(torch.bfloat16)), ("float32, B/C (dim, N)", const),
             ("float32, B (dim, N), C varying", dict(x, B=const["B"]))]

    def fwd(kw):
        with torch.no_grad():
            ops.selective_scan(**kw, delta_softplus=True)

    def fwd_bwd(kw):
        kw = dict(kw, u=kw["u"].clone().requires_grad_(True), delta=kw["delta"].clone().requires_grad_(True),
                  B=kw["B"].clone().requires_grad_(True), C=kw["C"].clone().requires_grad_(True))
        out = ops.selective_scan(**kw, delta_softplus=True)[0]
        out.backward(torch.ones_like(out))

    times = {name: ([], []) for name, _ in forms}
    for name, kw in forms:  # warm-up
        fwd(kw)
        fwd_bwd(kw)
    for _ in range(repeat):
        for name, kw in forms:
            for fn, acc in ((fwd, times[name][0]), (fwd_bwd, times[name][1])):
                t0 = time.perf_counter()
                fn(kw)
                acc.append(time.perf_counter() - t0)
    base_f, base_b = (statistics.median(t) for t in times[forms[0][0]])
    print(f"\ninput forms, ({batch}, {dim}, {seqlen}), dstate {dstate}, z, D, softplus(delta + bias); "
          f"exact rule; medians of {repeat}, interleaved")
    print(f"{'form':<32} {'fwd ms':>9} {'x fp32':>7} {'fwd+bwd ms':>11} {'x fp32':>7}")
    for name, _ in forms:
        tf, tb = (statistics.median(t) for t in times[name])
        print(f"{name:<32} {tf * 1e3:>9.2f} {tf / base_f:>7.2f} {tb * 1e3:>11.2f} {tb / base_b:>7.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seqlens", default="128,512,1024,2048,4096")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ref-repeat", type=int, default=1)
    ap.add_argument("--forms-only", action="store_true", help="only the input-form table")
    ap.add_argument("--forms-seqlen", type=int, default=1024)
    args = ap.parse_args()
    lib = os.environ.get("MAMBA_LRP_LIB", str(ROOT / "build" / "libmamba_lrp.so"))
    torch.ops.load_library(lib)
    torch.set_num_threads(args.threads)
    ops = torch.ops.mamba_lrp
    isa = torch.ops.mamba_lrp  # noqa: F841
    print(f"torch {torch.__version__}, intra-op threads: {torch.get_num_threads()}, BLAS loaded: {loaded_blas()}")
    print(f"CPU scan instruction set: {os.environ.get('MAMBA_LRP_CPU_ISA', 'best available')}; float32; "
          "MambaLRP rule, z gate, D, softplus(delta + bias)")
    print(f"{'shape':<26} {'seqlen':>6} {'fwd ms':>9} {'bwd ms':>9} {'bwd/f':>6} {'fwd G/s':>8} {'bwd G/s':>8} "
          f"{'loop fwd':>10} {'loop bwd':>10} {'fwd gain':>9} {'bwd gain':>9}")
    if not args.forms_only:
        for L in [int(s) for s in args.seqlens.split(",")]:
            bench(ops, "Mamba-130M (1,1536,16)", 1, 1536, L, 16, args.repeat, args.ref_repeat)
        bench(ops, "Vim-S (1,768,16)", 1, 768, 197, 16, args.repeat, args.ref_repeat)
        print("G/s = giga state updates per second (batch*dim*dstate*seqlen / time); "
              "gain = PyTorch loop time / op time")
    bench_forms(ops, 1, 1536, args.forms_seqlen, 16, args.repeat)


if __name__ == "__main__":
    main()
