#!/usr/bin/env bash
# Installs everything mamba-lrp needs on a fresh Debian 12 (as root, from Debian's
# archive), configures and builds into build/, then runs the project's main job on an
# embedded example and prints the result.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build git
  libtorch-dev python3-torch            # LibTorch 1.13 (C++) and the same torch for /usr/bin/python3
  libopenblas0-pthread                  # libtorch multiplies matrices through the system BLAS: OpenBLAS, not the slow reference one
  catch2 nlohmann-json3-dev libstb-dev
  python3-numpy python3-pytest
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

echo
echo "== mamba-lrp main job =="
build/scan_demo
