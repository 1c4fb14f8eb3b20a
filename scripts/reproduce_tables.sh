#!/usr/bin/env bash
# Faithfulness of every method on the two trained models (the paper's Tables 1 and 2):
# token flipping on SpamAssassin (Mamba classifier), patch flipping on digits (Vim).
# Trains the models first if they are not there (scripts/train_models.sh).
#   scripts/reproduce_tables.sh            (EVAL_ROWS test rows per data set, default 400)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${EVAL_ROWS:-400}"  # EVAL_ROWS=100000: every test row
[[ -d build/models/spam-mamba && -d build/models/digits-vim ]] || scripts/train_models.sh
mkdir -p build/results
# The first $rows test rows of each set (a fixed subset: the whole spam test set takes long with IG).
/usr/bin/python3 - "$rows" <<'PY'
import sys
sys.path.insert(0, "tests/python")
import st_io
n = int(sys.argv[1])
for name in ["spam", "digits"]:
    d = st_io.load_file(f"build/data/{name}/test.safetensors")
    st_io.save_file({k: v[:n].contiguous() for k, v in d.items()}, f"build/results/{name}_test.safetensors")
PY
common="mambalrp,gi,smoothgrad,ig,lrp-ln,random,mambalrp-no-silu,mambalrp-no-ssm,mambalrp-no-gate"
echo "== SpamAssassin, Mamba classifier, token flipping (baseline: the pad token's embedding) =="
build/mamba-lrp evaluate --model build/models/spam-mamba --data build/results/spam_test.safetensors \
  --methods "$common,attnroll,mambaattr" --baseline pad --steps 11 \
  --json build/results/spam.json --markdown build/results/spam.md --plot build/results/spam.svg
echo "== digits, Vision Mamba, patch flipping (baseline: zero = the training mean after normalisation) =="
build/mamba-lrp evaluate --model build/models/digits-vim --data build/results/digits_test.safetensors \
  --methods "$common,attnroll,mambaattr" --baseline zero --steps 11 \
  --json build/results/digits.json --markdown build/results/digits.md --plot build/results/digits.svg
