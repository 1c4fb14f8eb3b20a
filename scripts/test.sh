#!/usr/bin/env bash
# Runs every test, C++ and Python, through ctest (GPU tests are labelled "cuda" and are
# left out on machines without a GPU). Expects scripts/setup.sh to have built build/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j "$(nproc)"
label_args=(-LE cuda)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then label_args=(); fi
ctest --test-dir build --output-on-failure "${label_args[@]}" "$@"
