#!/usr/bin/env bash
# Runs every test, C++ and Python, through ctest (GPU tests are labelled "cuda" and are
# left out on machines without a GPU). Expects scripts/setup.sh to have built build/.
#
# scripts/test.sh --sanitize [CTEST ARGS]: builds build-sanitize/ with AddressSanitizer and
# UBSan (clang when present, which also builds the fuzz targets for scripts/fuzz.sh; gcc
# otherwise) and runs the C++ tests, the fuzz regression corpus and the Python tests that
# drive the command line, under the sanitizers. Any report fails the run.
# scripts/test.sh --sanitize-io [CTEST ARGS]: only the input parsers (their own small
# library): the io tests and the regression corpus through the instrumented fuzz targets;
# minutes to build where --sanitize builds the whole library.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} != --sanitize && ${1:-} != --sanitize-io ]]; then
  cmake --build build -j "$(nproc)"
  label_args=(-LE cuda)
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then label_args=(); fi
  # Both CPUs: the tests are independent processes (each makes its own temporary folder).
  ctest --test-dir build --output-on-failure --parallel "$(nproc)" "${label_args[@]}" "$@"
  exit
fi
scope=${1#--sanitize}
shift
build=${MAMBA_LRP_SANITIZE_BUILD:-build-sanitize}
compiler=(-DMAMBA_LRP_SANITIZE=ON)
runtime_name=libasan.so
cxx=${CXX:-c++}
if command -v clang++ >/dev/null; then
  compiler=(-DCMAKE_CXX_COMPILER=clang++ -DMAMBA_LRP_FUZZ=ON)
  runtime_name=libclang_rt.asan-x86_64.so
  cxx=clang++
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1: the sanitizers' usual setting (fast enough, reports still precise). No CUDA: the
# sanitizers check host code.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DMAMBA_LRP_CUDA=OFF "${compiler[@]}" "${launcher[@]}" ${MAMBA_LRP_CMAKE_ARGS:-}
runtime=$("$cxx" -print-file-name="$runtime_name")
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [[ $scope == -io ]]; then
  targets=(mamba_lrp_io_tests)
  [[ $cxx == clang++ ]] && targets+=(fuzz_safetensors fuzz_torch_save fuzz_config fuzz_tokenizer fuzz_image)
  cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
  LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    ctest --test-dir "$build" --output-on-failure -L io "$@"
  exit
fi
cmake --build "$build" -j "$(nproc)"
# C++ tests and the fuzz regression corpus: leaks are errors too. The shared runtime is
# preloaded so that it comes first whatever links it.
LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  ctest --test-dir "$build" --output-on-failure -LE cuda -R '^(cpp_tests|cpp_io_tests|fuzz_)' "$@"
# The Python tests that run build-sanitize/mamba-lrp (and load the instrumented library into
# Python, which leaks by design: no leak check there).
LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  ctest --test-dir "$build" --output-on-failure -LE cuda \
    -R '^python_(mamba_lm|vim|explainers|evaluate|train)$' "$@"
