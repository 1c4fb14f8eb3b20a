#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz for SECONDS each (default 600), or only the
# targets named: scripts/fuzz.sh [SECONDS] [TARGET...]. Targets: safetensors torch_save
# config tokenizer image composite cli_args. Needs clang; builds into build-sanitize/ (the
# folder of scripts/test.sh --sanitize) with ASan, UBSan and coverage instrumentation.
#
# Seeds are written by scripts/fuzz_corpus.py; what a fuzzer learns stays in
# build-sanitize/fuzz/corpus/TARGET. An input that crashes, leaks, times out (10 s) or
# needs more than 2 GB lands in build-sanitize/fuzz/findings/TARGET/: fix it, then copy it
# into tests/fuzz/regressions/TARGET/ so that ctest replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors torch_save config tokenizer image composite cli_args)
build=${MAMBA_LRP_SANITIZE_BUILD:-build-sanitize}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DMAMBA_LRP_CUDA=OFF -DCMAKE_CXX_COMPILER=clang++ -DMAMBA_LRP_FUZZ=ON "${launcher[@]}" ${MAMBA_LRP_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3  # Debian's, with PIL for JPEG seeds
"$python" scripts/fuzz_corpus.py seeds "$build/fuzz/seeds"
runtime=$(clang++ -print-file-name=libclang_rt.asan-x86_64.so)
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for t in "${targets[@]}"; do
  corpus=$build/fuzz/corpus/$t findings=$build/fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  echo "== fuzz_$t: ${seconds}s (log: $build/fuzz/$t.log)"
  if LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=1 "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -max_len=16384 -artifact_prefix="$findings/" -print_final_stats=1 \
       "$corpus" "$build/fuzz/seeds/$t" "tests/fuzz/regressions/$t" >"$build/fuzz/$t.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^Done" "$build/fuzz/$t.log" | tr '\n' ' '; echo
  else
    failed+=("$t")
    tail -n 30 "$build/fuzz/$t.log"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $build/fuzz/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: no finding in ${targets[*]} (${seconds}s each)"
