#!/usr/bin/env bash
# The main job of mamba-lrp, on the two trained models shipped in models/pretrained/ (seconds):
#   1. spam-mamba (a Mamba classifier, SpamAssassin) explains an email: on the terminal the
#      class, its probability and the most relevant tokens with their relevance; the token
#      heatmap in build/demo/email.html.
#   2. digits-vim (a Vision Mamba, 8x8 digits) explains a handwritten digit: the class and
#      its probability; build/demo/digit.png (relevance over the image) and
#      build/demo/digit_patches.png (per 2x2 patch).
# Re-run it on your own text or digit:
#   scripts/demo.sh [--text "Subject: ...\n..." | --email FILE] [--image DIGIT.png]
# The defaults are held-out examples of each test split (models/pretrained/*/examples/).
# The spam model read "Subject: <subject>\n<body>" with whitespace collapsed, 128 tokens;
# longer text is explained whole (Mamba has no length limit), the class read at its end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MAMBA_LRP:-build/mamba-lrp}
SPAM=models/pretrained/spam-mamba
DIGITS=models/pretrained/digits-vim
email=$SPAM/examples/held_out_spam.txt
text=""
image=$DIGITS/examples/held_out_digit.png
while (($#)); do
  case $1 in
  --text) text=$2; shift 2 ;;
  --email) email=$2; shift 2 ;;
  --image) image=$2; shift 2 ;;
  -h | --help) sed -n 2,14p "$0"; exit 0 ;;
  *) echo "demo: unknown option '$1' (--text, --email, --image)" >&2; exit 2 ;;
  esac
done
[[ -x $BIN ]] || { echo "demo: $BIN not built (scripts/setup.sh)" >&2; exit 1; }
[[ -n $text ]] || text=$(cat "$email")
mkdir -p build/demo

echo "== spam-mamba: is this email spam? (MambaLRP: which tokens decide) =="
printf '%s\n' "${text:0:300}$([[ ${#text} -gt 300 ]] && echo ...)" | sed 's/^/  | /'
"$BIN" explain --model "$SPAM" --text "$text" --json build/demo/email.json --html build/demo/email.html
echo "wrote build/demo/email.html (token heatmap: red for the class, blue against)"
echo
echo "== digits-vim: which digit is this? (MambaLRP over the image) =="
"$BIN" explain --model "$DIGITS" --image "$image" --json build/demo/digit.json --png build/demo/digit.png
echo "wrote build/demo/digit.png and build/demo/digit_patches.png (relevance per pixel / per 2x2 patch)"
