"""Vision Mamba benchmark: forward vs MambaLRP explanation (token + pixel relevance, the
default MambaLRP-Vim composite) at the Vim-S shape (random weights), 224x224, batch 1 and 16,
in one run of build/bench_vim_cpp. Also reports the whole process's wall time and peak RSS.
Not a test.

    scripts/bench_vim [--preset configs/vim-small.json] [--batches 1,16] [--repeat 3] [--threads N]

Targets (issue 4): explanation <= 2.2x forward; Vim-S batch-1 explanation <= 0.5 s.
"""
import argparse
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "configs" / "vim-small.json"))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the run (default: as set)")
    ap.add_argument("--build", default=os.environ.get("MAMBA_LRP_BUILD", str(ROOT / "build")))
    a = ap.parse_args()
    exe = pathlib.Path(a.build) / "bench_vim_cpp"
    if not exe.exists():
        sys.exit(f"{exe} not found: build first (cmake --build build --target bench_vim_cpp)")
    env = dict(os.environ)
    if a.threads:
        env["OMP_NUM_THREADS"] = str(a.threads)
    print(f"preset {a.preset}; {os.cpu_count()} CPUs visible; OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}")
    t0 = time.perf_counter()
    p = subprocess.run([str(exe), a.preset, a.batches, str(a.repeat)], env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        sys.exit(p.returncode)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"whole run {wall:.1f} s, peak RSS {rss:.0f} MiB")
    print("targets: explanation <= 2.2x forward; Vim-S batch-1 explanation <= 0.5 s")


if __name__ == "__main__":
    main()
