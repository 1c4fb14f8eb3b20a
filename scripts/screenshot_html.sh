#!/usr/bin/env bash
# Renders an explanation page in headless Chromium (Debian's `chromium`) and writes a PNG,
# to look at what a user sees:   scripts/screenshot_html.sh build/demo_explanation.html out.png
# Installs chromium with apt-get when it is missing (root).
set -euo pipefail
page="$(realpath "${1:?usage: screenshot_html.sh PAGE.html OUT.png}")"
out="${2:?usage: screenshot_html.sh PAGE.html OUT.png}"
if ! command -v chromium >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: runs as root in containers; the network flags keep it from calling out.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1100,700 --screenshot="$(realpath -m "$out")" "file://$page" 2>/dev/null
test -s "$out" && echo "wrote $out"
