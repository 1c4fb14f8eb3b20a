#!/usr/bin/env bash
# Faithfulness of every method on the trained models (the paper's Tables 1 and 2, plus Mamba-2):
# token flipping on SpamAssassin (Mamba and Mamba-2 classifiers), patch flipping on digits (Vim).
# Trains the models first if they are not there (scripts/train_models.sh).
#   scripts/reproduce_tables.sh [spam] [spam2] [digits]   (all three by default;
#                                                         EVAL_ROWS test rows per data set, default 400)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${EVAL_ROWS:-400}"  # EVAL_ROWS=100000: every test row
tables=("$@")
((${#tables[@]})) || tables=(spam spam2 digits)
declare -A model_of=([spam]=spam-mamba [spam2]=spam-mamba2 [digits]=digits-vim)
for t in "${tables[@]}"; do
  [[ -n ${model_of[$t]:-} ]] || { echo "reproduce_tables: unknown table '$t' (spam, spam2, digits)"; exit 2; }
  [[ -d build/models/${model_of[$t]} ]] || scripts/train_models.sh "$t"
done
mkdir -p build/results
# The first $rows test rows of each set (a fixed subset: the whole spam test set takes long with IG).
/usr/bin/python3 - "$rows" "${tables[@]}" <<'PY'
import sys
sys.path.insert(0, "tests/python")
import st_io
n = int(sys.argv[1])
for name in sorted({{"spam2": "spam"}.get(t, t) for t in sys.argv[2:]}):  # spam2 reads the spam data
    d = st_io.load_file(f"build/data/{name}/test.safetensors")
    st_io.save_file({k: v[:n].contiguous() for k, v in d.items()}, f"build/results/{name}_test.safetensors")
PY
methods="mambalrp,gi,smoothgrad,ig,lrp-ln,random,mambalrp-no-silu,mambalrp-no-ssm,mambalrp-no-gate,attnroll,mambaattr"
for t in "${tables[@]}"; do
  case $t in
  spam)
    echo "== SpamAssassin, Mamba classifier, token flipping (baseline: the pad token's embedding) =="
    build/mamba-lrp evaluate --model build/models/spam-mamba --data build/results/spam_test.safetensors \
      --methods "$methods" --baseline pad --steps 11 \
      --json build/results/spam.json --markdown build/results/spam.md --plot build/results/spam.svg
    ;;
  spam2)
    echo "== SpamAssassin, Mamba-2 classifier, token flipping (baseline: the pad token's embedding) =="
    build/mamba-lrp evaluate --model build/models/spam-mamba2 --data build/results/spam_test.safetensors \
      --methods "$methods" --baseline pad --steps 11 \
      --json build/results/spam2.json --markdown build/results/spam2.md --plot build/results/spam2.svg
    ;;
  digits)
    echo "== digits, Vision Mamba, patch flipping (baseline: zero = the training mean after normalisation) =="
    build/mamba-lrp evaluate --model build/models/digits-vim --data build/results/digits_test.safetensors \
      --methods "$methods" --baseline zero --steps 11 \
      --json build/results/digits.json --markdown build/results/digits.md --plot build/results/digits.svg
    ;;
  esac
done
