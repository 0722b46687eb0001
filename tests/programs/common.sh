# tests/programs/common.sh — what the program tests share (sourced, not run).
#   BIN   the folder of the example programs (train_gpt2, prepare_data, quality_test)
#   DATA  token files made by examples.prepare_data (train.bin, val.bin)
#   WORK  a scratch folder for this test, emptied first
set -euo pipefail
BIN=$1 DATA=$2 WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
TRAIN="$BIN/train_gpt2"
# A CI-sized model (one head of 64: in every build's kernel list) and a few steps.
TINY=(--data "$DATA" --layers 1 --heads 1 --C 64 --seq 16 --batch 4 --eval-batches 2
      --log-every 1000)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The columns of metrics.tsv that do not depend on timing: kind, step, tokens, loss, lr, norm.
metrics_values() { cut -f1-3,5-7 "$1"; }

# Fails when a (kind, step) pair appears twice in a metrics.tsv.
unique_steps() {
  local dup
  dup=$(cut -f1,2 "$1" | sort | uniq -d)
  [[ -z "$dup" ]] || fail "$1 repeats rows: $dup"
}

# The CRC-32C of the final parameters a run wrote in its summary.
params_crc() { grep -E '^params_crc32c' "$1/summary.tsv" | cut -f2; }
