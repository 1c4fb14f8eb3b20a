#!/usr/bin/env bash
# The build dependencies a bare GPU machine lacks, as one folder to carry there: run here,
# on a Debian machine with apt and network access to the Debian archive:
#
#   scripts/make_gpu_deps.sh            # -> .gpu_deps/ (ignored by git)
#
# It downloads the Debian packages below (apt-get download: the .deb files only, nothing is
# installed) and unpacks each with dpkg -x into .gpu_deps/root/, so the folder holds
# ready headers, CMake package files and libraries under .gpu_deps/root/usr. The GPU
# machine needs neither apt nor dpkg: configure with
#   -DMAMBA_LRP_DEPS_PREFIX=$PWD/.gpu_deps/root/usr
# (scripts/gpu_check.sh does so when .gpu_deps/root/usr exists). Through the device tool,
# name the folder in carry: run(command="scripts/gpu_check.sh --quick", carry=[".gpu_deps"]).
#
# The libraries are Debian 12's (glibc 2.36): they load on any x86-64 Linux with glibc 2.36
# or newer. Environment: GPU_DEPS (the folder, default .gpu_deps), APT_UPDATE=0 to skip
# apt-get update (offline, with the package lists already there).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=${GPU_DEPS:-$ROOT/.gpu_deps}

# Every Debian package the GPU build reads, -dev packages with the runtime libraries they
# link to. The one list; add a package here when the build needs a new one.
PACKAGES=(
  nlohmann-json3-dev                    # JSON (header-only, CMake config nlohmann_json)
  catch2                                # Catch2 2.x (header-only, CMake config Catch2)
  libpng-dev libpng16-16                # PNG decoding and writing
  libjpeg62-turbo-dev libjpeg62-turbo   # JPEG decoding
  zlib1g-dev zlib1g                     # zlib, which libpng links
)

command -v apt-get > /dev/null || { echo "make_gpu_deps: apt-get not found (run this on a Debian machine)" >&2; exit 1; }
command -v dpkg > /dev/null || { echo "make_gpu_deps: dpkg not found" >&2; exit 1; }

if [ "${APT_UPDATE:-1}" != 0 ]; then
  # Root can refresh the system's lists; anyone else gets private lists under /tmp.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
  else
    mkdir -p /tmp/gpu_deps_apt_lists/partial
    APT_OPTS=(-o Dir::State::Lists=/tmp/gpu_deps_apt_lists -o Debug::NoLocking=1)
    apt-get "${APT_OPTS[@]}" update -qq
  fi
fi
APT_OPTS=${APT_OPTS:-}

rm -rf "$DEPS/debs" "$DEPS/root"
mkdir -p "$DEPS/debs" "$DEPS/root"
(cd "$DEPS/debs" && apt-get ${APT_OPTS:+"${APT_OPTS[@]}"} download "${PACKAGES[@]}")
for deb in "$DEPS"/debs/*.deb; do
  dpkg -x "$deb" "$DEPS/root"
done
# What the build never reads (documentation, the .deb files once unpacked): less to carry.
# Static archives stay: Catch2's CMake package names its libCatch2WithMain.a.
rm -rf "$DEPS/root/usr/share/doc" "$DEPS/root/usr/share/man" "$DEPS/root/usr/share/lintian" "$DEPS/debs"
# Absolute links (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) would point into the GPU
# machine's own /lib: make them relative, into this tree.
find "$DEPS/root" -type l -lname '/*' | while read -r link; do
  target="$DEPS/root$(readlink "$link")"
  if [ -e "$target" ]; then ln -sfr "$target" "$link"; else rm "$link"; fi
done

# The prefix must hold what the build looks up; fail here rather than on the GPU machine.
P=$DEPS/root/usr
for need in include/nlohmann/json.hpp include/catch2/catch.hpp include/png.h \
            include/jpeglib.h include/zlib.h; do
  [ -e "$P/$need" ] || { echo "make_gpu_deps: $P/$need missing after unpacking" >&2; exit 1; }
done
ls "$P"/lib/*/libpng16.so.16* "$P"/lib/*/libjpeg.so.62* > /dev/null

printf '%s\n' "${PACKAGES[@]}" > "$DEPS/PACKAGES"
echo "make_gpu_deps: ${#PACKAGES[@]} packages unpacked into $DEPS/root ($(du -sh "$DEPS" | cut -f1) in all)"
echo "  configure with -DMAMBA_LRP_DEPS_PREFIX=$P; carry [\".gpu_deps\"] to the device machine"
