#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU, nvcc and a CUDA PyTorch (python3), and
# none of Debian's -dev packages: those come from .gpu_deps/ (scripts/make_gpu_deps.sh,
# run beforehand on a Debian machine). Two modes, each made to end within one 600 s command
# on an H100/H200 started fresh (a time budget cuts every step short, logs kept):
#
#   scripts/gpu_check.sh --quick   the library, the tests and the CLI only; the ctest label
#                                  `cuda` once (the CPU suite is CI's); compute-sanitizer
#                                  memcheck on a small case of every kernel; a short bench
#                                  (seqlen <= 2048, the PyTorch loop only up to 1024); explain
#                                  and evaluate under torchrun with 2 CPU ranks (Gloo built
#                                  against this Torch 2.x) equal to one process.
#   scripts/gpu_check.sh           (full) the library, the CLI and bench_explain_cpp built; the
#                                  full scan bench (seqlen <= 8192, loop up to 2048); a MambaLRP
#                                  explanation of a Mamba-130M-shaped model at L = 2048 timed on
#                                  the GPU and on the CPU; then memcheck and racecheck.
#                                  --with-tests builds everything and adds the `cuda` label.
#
# Through the device tool (README "GPU check"): run(command="scripts/gpu_check.sh --quick",
# carry=[".gpu_deps"], timeout_s=600), then the same without --quick.
#
# Logs under $OUT (default ./gpu_out), at most 8 files: summary.txt (one line per step,
# PASS/FAIL/TIMEOUT), env.log, configure.log, build.log, ctest.log, sanitizer.log,
# bench.log, explain.log. Exit status 0 when every step passed.
#
# Environment: OUT, MAMBA_LRP_GPU_BUILD (build dir, default build-gpu), PYTHON (default
# python3), JOBS (default nproc), GPU_CHECK_BUDGET (seconds for the whole run, default 560),
# CUDA_ARCH (default: the GPU's, e.g. 90), BENCH_ARGS (extra bench arguments).
set -uo pipefail

MODE=full
WITH_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --quick) MODE=quick ;;
    --with-tests) WITH_TESTS=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (--quick, --with-tests)" >&2; exit 2 ;;
  esac
done
[ "$MODE" = quick ] && WITH_TESTS=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
BUILD=${MAMBA_LRP_GPU_BUILD:-$ROOT/build-gpu}
PYTHON=$(command -v "${PYTHON:-python3}")
JOBS=${JOBS:-$(nproc)}
BUDGET=${GPU_CHECK_BUDGET:-560}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=0

# step NAME LOG CAP CMD...: CMD with its output appended to $OUT/LOG, for at most CAP seconds
# and never past the budget; one line in summary.txt.
step() {
  local name=$1 log=$2 cap=$3
  shift 3
  local left=$((BUDGET - SECONDS - 5))
  local limit=$((cap < left ? cap : left))
  echo "== $name ($(date -u +%T), limit ${limit}s)" >> "$OUT/$log"
  if [ "$limit" -lt 10 ]; then
    printf '%-20s SKIPPED: no time left in the %ss budget\n' "$name" "$BUDGET" | tee -a "$OUT/summary.txt"
    failed=1
    return 1
  fi
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >> "$OUT/$log" 2>&1
  local rc=$?
  local verdict=PASS
  [ "$rc" -eq 0 ] || verdict="FAIL rc=$rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="TIMEOUT after ${limit}s"
  printf '%-20s %-24s %4ds  (%s)\n' "$name" "$verdict" "$((SECONDS - t0))" "$log" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || failed=1
  return "$rc"
}

finish() {
  echo
  echo "gpu_check ($MODE): $([ "$failed" -eq 0 ] && echo PASSED || echo FAILED) in ${SECONDS}s" >> "$OUT/summary.txt"
  cat "$OUT/summary.txt"
  exit "$failed"
}

# ---- environment -----------------------------------------------------------------------
{
  date -u
  uname -a
  nvidia-smi || true
  command -v nvcc && nvcc --version
  "$PYTHON" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  cmake --version | head -1
  command -v ninja || echo "ninja: not found"
  command -v compute-sanitizer || echo "compute-sanitizer: not found"
  echo "mode $MODE, budget ${BUDGET}s, jobs $JOBS"
} > "$OUT/env.log" 2>&1

TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>> "$OUT/env.log") || {
  echo "no torch in $PYTHON" | tee -a "$OUT/summary.txt"
  failed=1
  finish
}
DEPS_ARGS=()
if [ -d "$ROOT/.gpu_deps/root/usr/include" ]; then
  DEPS_ARGS=(-DMAMBA_LRP_DEPS_PREFIX="$ROOT/.gpu_deps/root/usr")
else
  echo "no .gpu_deps/root (scripts/make_gpu_deps.sh, carry [\".gpu_deps\"]): using the system's packages" \
    | tee -a "$OUT/summary.txt"
fi
# This GPU's architecture only (a quicker build); CI compiles sm_80 and sm_90.
ARCH=${CUDA_ARCH:-$("$PYTHON" -c 'import torch; c = torch.cuda.get_device_capability(0); print(f"{c[0]}{c[1]}")' \
                    2>/dev/null || echo "80;90")}

# ---- configure, build ------------------------------------------------------------------
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
step configure configure.log 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMAMBA_LRP_CUDA=ON -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" "${DEPS_ARGS[@]}" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DMAMBA_LRP_PYTHON="$PYTHON" || finish
if ! grep -q "CUDA registration=ON" "$OUT/configure.log"; then
  echo "configure: this Torch has no CUDA, the CUDA ops would not be registered" | tee -a "$OUT/summary.txt"
  failed=1
  finish
fi
if [ "$MODE" = quick ]; then
  TARGETS=(--target mamba_lrp mamba_lrp_tests mamba-lrp)
else
  TARGETS=()
  [ "$WITH_TESTS" = 1 ] || TARGETS=(--target mamba_lrp mamba-lrp bench_explain_cpp)
fi
step build build.log 330 cmake --build "$BUILD" "${TARGETS[@]}" -j "$JOBS" || finish

# ---- the tests labelled cuda -------------------------------------------------------------
if [ "$WITH_TESTS" = 1 ]; then
  step ctest-cuda ctest.log 150 bash -c "cd '$BUILD' && ctest -L cuda -j 4 --output-on-failure --timeout 140"
fi

# ---- compute-sanitizer on a small case of every kernel -----------------------------------
SMALL="$BUILD/sanitizer_case.py"
cat > "$SMALL" <<'EOF'
# Every CUDA kernel once on small shapes: forward (with and without z, last state),
# MambaLRP and exact backward, float32 / float16 / bfloat16, groups, dstate 16 and 40 (the
# wide-state layout), and the zero-size inputs (seqlen 0, batch 0, dim 0).
import sys
import torch
torch.ops.load_library(sys.argv[1])
ops = torch.ops.mamba_lrp
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for (b, d, L, n, g) in ((2, 8, 70, 16, 1), (1, 6, 33, 40, 2), (2, 3, 0, 4, 1), (0, 3, 5, 4, 1), (2, 0, 5, 4, 1)):
        u, delta, z = (torch.randn(b, d, L, device="cuda").to(dtype) for _ in range(3))
        A = -torch.rand(d, n, device="cuda") - 0.5
        B, C = (torch.randn(b, g, n, L, device="cuda").to(dtype) for _ in range(2))
        D, bias = torch.randn(d, device="cuda"), torch.randn(d, device="cuda")
        for zz in (z, None):
            out, y, last = ops._selective_scan_fwd(u, delta, A, B, C, D, zz, bias, True, True)
            for rule in ("mambalrp", "exact"):
                ops._selective_scan_bwd(torch.randn_like(out), torch.randn_like(last), u, delta, A, B, C, D, zz,
                                        bias, y, True, rule)
torch.cuda.synchronize()
print("sanitizer case done")
EOF
sanitize() {
  if ! command -v compute-sanitizer > /dev/null; then
    echo "compute-sanitizer not found: skipped" | tee -a "$OUT/summary.txt" "$OUT/sanitizer.log"
    return
  fi
  local tool
  for tool in "$@"; do
    step "sanitizer-$tool" sanitizer.log 120 compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$PYTHON" "$SMALL" "$BUILD/libmamba_lrp.so"
  done
}
# The quick run checks memory first; the full run times first and checks after (a step
# that no longer fits the budget is reported SKIPPED).
[ "$MODE" = quick ] && sanitize memcheck

# ---- benchmarks ------------------------------------------------------------------------------
export PYTHONUNBUFFERED=1
if [ "$MODE" = quick ]; then
  # shellcheck disable=SC2086
  step bench bench.log 90 "$PYTHON" "$ROOT/scripts/bench_scan_cuda.py" --lib "$BUILD/libmamba_lrp.so" \
    --max-seqlen 2048 --ref-max-seqlen 1024 --reps 5 ${BENCH_ARGS:-}
else
  # shellcheck disable=SC2086
  step bench bench.log 180 "$PYTHON" "$ROOT/scripts/bench_scan_cuda.py" --lib "$BUILD/libmamba_lrp.so" \
    --max-seqlen 8192 --ref-max-seqlen 2048 ${BENCH_ARGS:-}
  # A MambaLRP explanation of a Mamba-130M-shaped model (random weights) at L = 2048: the
  # same program on the GPU, then on the CPU (in-process medians; see bench_explain.cpp).
  MODEL=$BUILD/bench_model_130m
  step bench-model explain.log 60 "$PYTHON" "$ROOT/scripts/make_bench_model.py" "$MODEL" &&
    step explain-gpu explain.log 60 "$BUILD/bench_explain_cpp" "$MODEL" 2048 3 cuda &&
    step explain-cpu explain.log 120 "$BUILD/bench_explain_cpp" "$MODEL" 2048 1 cpu
fi
cat "$OUT/bench.log" 2> /dev/null
[ -f "$OUT/explain.log" ] && cat "$OUT/explain.log"
[ "$MODE" = full ] && sanitize memcheck racecheck

# ---- torchrun: explain and evaluate over 2 CPU ranks, Gloo as compiled against this Torch --
# (the c10d API of Torch 2.x; the results are gathered over Gloo on every device, README
# "Many rows"). The two-ranks-equal-one-process tests of test_distributed.py, log in ctest.log.
if [ "$MODE" = quick ]; then
  if ! grep -q "mamba-lrp: torchrun support" "$OUT/configure.log"; then
    echo "torchrun: SKIPPED: configure found no c10d with Gloo in this Torch (see configure.log)" | tee -a "$OUT/summary.txt"
  elif ! "$PYTHON" -c "import pytest" 2> /dev/null; then
    echo "torchrun: SKIPPED: no pytest in $PYTHON" | tee -a "$OUT/summary.txt"
  else
    step torchrun ctest.log 120 env MAMBA_LRP_BUILD="$BUILD" GLOO_SOCKET_IFNAME=lo "$PYTHON" -m pytest -q -x \
      "$ROOT/tests/python/test_distributed.py" -k two_ranks_equals_one_process
  fi
fi
finish
