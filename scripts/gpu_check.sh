#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU, nvcc and a CUDA PyTorch:
#   1. configures build-gpu/ against the CUDA Torch of `python3` (MAMBA_LRP_CUDA=ON),
#   2. builds everything,
#   3. runs every ctest test, CPU and CUDA (label cuda) alike,
#   4. runs compute-sanitizer (memcheck, then racecheck) on a small case of every kernel,
#   5. runs the CUDA benchmark (scripts/bench_scan_cuda.py),
# and writes its logs under $OUT (default ./gpu_out): summary.txt, env.log, configure.log,
# build.log, ctest.log, sanitizer.log, bench.log. Exit status 0 when every step passed.
#
# A bare GPU image may lack the two header-only build dependencies (nlohmann_json and
# Catch2 2.x). Bring them as Debian packages in .gpu_deps/ of the checkout (ignored by git):
#   mkdir -p .gpu_deps && (cd .gpu_deps && apt-get download nlohmann-json3-dev catch2)
# and this script unpacks them into /tmp/gpu_deps and adds that to CMAKE_PREFIX_PATH.
#
# Environment: OUT (logs), MAMBA_LRP_GPU_BUILD (build dir, default build-gpu),
# PYTHON (default python3), JOBS (build jobs, default nproc), BENCH_ARGS (extra arguments
# of the benchmark, e.g. "--dtype bfloat16").
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
BUILD=${MAMBA_LRP_GPU_BUILD:-$ROOT/build-gpu}
PYTHON=$(command -v "${PYTHON:-python3}")
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=0

# step NAME LOG CMD...: run CMD with its output in $OUT/LOG (appended), record the status.
step() {
  local name=$1 log=$2
  shift 2
  echo "== $name" | tee -a "$OUT/$log"
  local t0=$SECONDS
  "$@" >> "$OUT/$log" 2>&1
  local rc=$?
  printf '%-22s rc=%-3d %4ds  (%s)\n' "$name" "$rc" "$((SECONDS - t0))" "$log" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || failed=1
  return "$rc"
}

# ---- environment ---------------------------------------------------------------------
{
  date -u
  uname -a
  nvidia-smi || true
  command -v nvcc && nvcc --version
  "$PYTHON" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  cmake --version | head -1
  command -v compute-sanitizer || echo "compute-sanitizer: not found"
} > "$OUT/env.log" 2>&1

TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)') || {
  echo "no torch in $PYTHON" | tee -a "$OUT/summary.txt"
  exit 1
}
PREFIX="$TORCH_PREFIX"
if compgen -G "$ROOT/.gpu_deps/*.deb" > /dev/null; then
  mkdir -p /tmp/gpu_deps
  for deb in "$ROOT"/.gpu_deps/*.deb; do
    if command -v dpkg > /dev/null; then
      dpkg -x "$deb" /tmp/gpu_deps
    else  # a .deb is an ar archive holding data.tar.*
      (d=$(mktemp -d) && cd "$d" && ar x "$deb" && tar -xf data.tar.* -C /tmp/gpu_deps && rm -rf "$d")
    fi
  done
  PREFIX="$PREFIX;/tmp/gpu_deps/usr"
fi

# Build for this GPU only (faster); CI compiles sm_80 and sm_90 on the CPU machines.
ARCH=$("$PYTHON" -c 'import torch; c = torch.cuda.get_device_capability(0); print(f"{c[0]}{c[1]}")' 2>/dev/null || echo "80;90")

# ---- configure, build ----------------------------------------------------------------
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
step configure configure.log cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMAMBA_LRP_CUDA=ON -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DMAMBA_LRP_PYTHON="$PYTHON" || { cat "$OUT/summary.txt"; exit 1; }
grep -q "CUDA registration=ON" "$OUT/configure.log" || {
  echo "configure: this Torch has no CUDA, the CUDA ops would not be registered" | tee -a "$OUT/summary.txt"
  failed=1
}
step build build.log cmake --build "$BUILD" -j "$JOBS" || { cat "$OUT/summary.txt"; exit 1; }

# ---- every test, CPU and CUDA --------------------------------------------------------
step ctest ctest.log bash -c "cd '$BUILD' && ctest --output-on-failure -j 4 --timeout 1500"
step ctest-cuda-only ctest.log bash -c "cd '$BUILD' && ctest --output-on-failure -L cuda"

# ---- compute-sanitizer on a small case of every kernel --------------------------------
SMALL="$BUILD/sanitizer_case.py"
cat > "$SMALL" <<'EOF'
# Every CUDA kernel once on small shapes: forward (with and without z, last state),
# MambaLRP and exact backward, float32 / float16 / bfloat16, groups, dstate 16 and 40.
import sys
import torch
torch.ops.load_library(sys.argv[1])
ops = torch.ops.mamba_lrp
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for (b, d, L, n, g) in ((2, 8, 70, 16, 1), (1, 6, 33, 40, 2)):
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
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    step "sanitizer-$tool" sanitizer.log compute-sanitizer --tool "$tool" --error-exitcode 9 \
      "$PYTHON" "$SMALL" "$BUILD/libmamba_lrp.so"
  done
else
  echo "compute-sanitizer not found: skipped" | tee -a "$OUT/summary.txt" "$OUT/sanitizer.log"
fi

# ---- benchmark -----------------------------------------------------------------------
# shellcheck disable=SC2086
step bench bench.log "$PYTHON" "$ROOT/scripts/bench_scan_cuda.py" --lib "$BUILD/libmamba_lrp.so" ${BENCH_ARGS:-}
cat "$OUT/bench.log"

echo
cat "$OUT/summary.txt"
exit "$failed"
