#!/usr/bin/env bash
# tests/programs/resume.sh — a run's files and its resume never mix two runs, repeat a step or
# load a damaged checkpoint.
#
#   resume.sh BIN DATA WORK CASE
#
#   out_folder     a fresh run refuses a folder holding a run (naming --resume and
#                  --overwrite); --overwrite replaces it (no row twice, old checkpoints gone);
#                  resuming into a folder of another run is refused too
#   cut_metrics    a run resumed from an older checkpoint (ckpt.bin.prev) cuts metrics.tsv back
#                  to that step: every step once, and the same rows and parameters as a
#                  straight run
#   fallback       one flipped byte in ckpt.bin: resume says so and continues from
#                  ckpt.bin.prev; without ckpt.bin.prev it refuses (exit 1)
#   mismatch       --resume with other model or data flags names each with both values;
#                  the same flags repeated are accepted
#   schedule       a checkpoint past the run's --steps is refused
#   other_data     resuming on other training tokens is refused, naming --data
#   tokenizer      token files of another vocabulary or tokenizer are refused at load
#   optimizer      a run of AdamW with SPAM resumes bit-exactly with its optimizer taken from
#                  the checkpoint; another optimizer or other SPAM settings are refused by
#                  name, and so are SPAM flags on an AdamW checkpoint
source "$(dirname "$0")/common.sh"
case_=$4
expect_failure() { "$(dirname "$0")/expect_failure.sh" "$@"; }
a="$WORK/a"

case "$case_" in
  out_folder)
    "$TRAIN" "${TINY[@]}" --steps 4 --eval-every 2 --ckpt-every 2 --out "$a" >/dev/null
    [[ -f "$a/ckpt.bin.prev" ]] || fail "no ckpt.bin.prev after two checkpoints"
    expect_failure "already holds a run.*--resume.*--overwrite" \
      "$TRAIN" "${TINY[@]}" --steps 3 --out "$a"
    "$TRAIN" "${TINY[@]}" --steps 3 --eval-every 2 --out "$a" --overwrite >/dev/null
    unique_steps "$a/metrics.tsv"
    [[ $(grep -c '^train' "$a/metrics.tsv") == 3 ]] || fail "metrics.tsv holds old rows"
    [[ ! -e "$a/ckpt.bin.prev" ]] || fail "--overwrite kept the old run's ckpt.bin.prev"
    "$TRAIN" "${TINY[@]}" --steps 2 --out "$WORK/b" >/dev/null
    expect_failure "already holds a run" \
      "$TRAIN" "${TINY[@]}" --steps 5 --resume "$a/ckpt.bin" --out "$WORK/b" ;;
  cut_metrics)
    "$TRAIN" "${TINY[@]}" --steps 8 --eval-every 3 --out "$WORK/straight" >/dev/null
    "$TRAIN" "${TINY[@]}" --steps 8 --eval-every 3 --stop-at 5 --ckpt-every 2 --out "$a" \
      >/dev/null
    # Rows up to step 5 exist; ckpt.bin.prev is at step 4: as if killed after writing step 5's
    # rows but before its checkpoint.
    "$TRAIN" "${TINY[@]}" --steps 8 --eval-every 3 --resume "$a/ckpt.bin.prev" --out "$a" \
      >"$WORK/resume.log"
    grep -q "dropped .* rows after step 4" "$WORK/resume.log" || fail "no rows were dropped"
    unique_steps "$a/metrics.tsv"
    diff <(metrics_values "$WORK/straight/metrics.tsv") <(metrics_values "$a/metrics.tsv") ||
      fail "the resumed metrics.tsv differs from the straight run's"
    [[ "$(params_crc "$WORK/straight")" == "$(params_crc "$a")" ]] ||
      fail "the resumed run's parameters differ from the straight run's" ;;
  fallback)
    "$TRAIN" "${TINY[@]}" --steps 6 --eval-every 3 --ckpt-every 2 --out "$a" >/dev/null
    cp "$a/ckpt.bin" "$WORK/ckpt.good"
    printf '\x5a' | dd of="$a/ckpt.bin" bs=1 seek=3000 conv=notrunc 2>/dev/null
    "$TRAIN" "${TINY[@]}" --steps 8 --resume "$a/ckpt.bin" --out "$a" >"$WORK/log" 2>"$WORK/err" ||
      fail "resume with a good ckpt.bin.prev failed: $(cat "$WORK/err")"
    grep -q "ckpt.bin' fails its checksum" "$WORK/err" || fail "no word of the bad checkpoint"
    grep -q "resuming from the previous checkpoint '.*ckpt.bin.prev' (step 4)" "$WORK/err" ||
      fail "no word of the fallback: $(cat "$WORK/err")"
    mkdir -p "$WORK/c"
    cp "$WORK/ckpt.good" "$WORK/c/ckpt.bin"
    printf '\x5a' | dd of="$WORK/c/ckpt.bin" bs=1 seek=3000 conv=notrunc 2>/dev/null
    expect_failure "ckpt.bin' fails its checksum" \
      "$TRAIN" "${TINY[@]}" --steps 8 --resume "$WORK/c/ckpt.bin" ;;
  mismatch)
    "$TRAIN" "${TINY[@]}" --arm ra --R 4 --gates per_head --steps 2 --out "$a" >/dev/null
    expect_failure "--arm baseline \(the checkpoint: ra\).*" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$a/ckpt.bin" --arm baseline
    expect_failure "--R 8 \(the checkpoint: 4\)" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$a/ckpt.bin" --R 8 --gates per_layer
    expect_failure "--gates per_layer \(the checkpoint: per_head\)" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$a/ckpt.bin" --gates per_layer
    for flag in "--layers 2" "--heads 2" "--C 128" "--seq 8" "--batch 2" "--seed 7" \
                "--restart" "--no-bias" "--dropout 0.1" "--gate-param softplus"; do
      expect_failure "${flag%% *} .*\(the checkpoint: " \
        "$TRAIN" "${TINY[@]}" --steps 4 --resume "$a/ckpt.bin" $flag
    done
    # The checkpoint's own values repeated are fine; --steps, --lr, ... may change.
    "$TRAIN" "${TINY[@]}" --arm ra --R 4 --gates per_head --steps 4 --lr 2e-3 \
      --resume "$a/ckpt.bin" --out "$a" >/dev/null || fail "resuming with the same flags failed" ;;
  schedule)
    "$TRAIN" "${TINY[@]}" --steps 6 --out "$a" >/dev/null
    expect_failure "at step 6, beyond this run's schedule of 4 steps" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$a/ckpt.bin"
    "$TRAIN" "${TINY[@]}" --steps 0 --resume "$a/ckpt.bin" --generate 4 >/dev/null ||
      fail "--steps 0 (generation only) on a finished checkpoint failed" ;;
  other_data)
    "$TRAIN" "${TINY[@]}" --steps 2 --out "$a" >/dev/null
    mkdir -p "$WORK/other"
    "$BIN/ra_write_tokens" "$WORK/other/train.bin" 257 byte 5000
    cp "$DATA/val.bin" "$WORK/other/"
    expect_failure "--data .*train.bin: 5000 tokens.*the checkpoint: [0-9]+ tokens" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/other" --steps 4 --resume "$a/ckpt.bin" ;;
  tokenizer)
    mkdir -p "$WORK/v300" "$WORK/bpe"
    "$BIN/ra_write_tokens" "$WORK/v300/train.bin" 300 byte 5000
    cp "$DATA/val.bin" "$WORK/v300/"
    expect_failure "train.bin' holds tokens of tokenizer 'byte' with vocab 300, expected tokenizer 'byte' with vocab 257" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/v300" --steps 2
    "$BIN/ra_write_tokens" "$WORK/bpe/val.bin" 257 gpt2 5000
    cp "$DATA/train.bin" "$WORK/bpe/"
    expect_failure "val.bin' holds tokens of tokenizer 'gpt2' with vocab 257, expected tokenizer 'byte'" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/bpe" --steps 2 ;;
  optimizer)
    SPAM=(--optimizer adamw_spam --spam-interval 3 --spam-warmup 2 --spam-clip-delay 1
          --spam-threshold 4)
    "$TRAIN" "${TINY[@]}" "${SPAM[@]}" --steps 7 --eval-every 3 --out "$WORK/straight" >/dev/null
    grep -q '^optimizer	adamw_spam$' "$WORK/straight/summary.tsv" || fail "summary lacks the optimizer"
    "$TRAIN" "${TINY[@]}" "${SPAM[@]}" --steps 7 --eval-every 3 --stop-at 4 --out "$a" >/dev/null
    expect_failure "--optimizer adamw \(the checkpoint: adamw_spam\)" \
      "$TRAIN" "${TINY[@]}" --steps 7 --resume "$a/ckpt.bin" --optimizer adamw
    expect_failure "--spam-interval 4 \(the checkpoint: 3\)" \
      "$TRAIN" "${TINY[@]}" --steps 7 --resume "$a/ckpt.bin" --spam-interval 4
    "$TRAIN" "${TINY[@]}" --steps 7 --eval-every 3 --resume "$a/ckpt.bin" --out "$a" >/dev/null ||
      fail "resuming a SPAM run without its flags failed"
    [[ "$(params_crc "$WORK/straight")" == "$(params_crc "$a")" ]] ||
      fail "the resumed SPAM run's parameters differ from the straight run's"
    "$TRAIN" "${TINY[@]}" --steps 2 --out "$WORK/b" >/dev/null
    expect_failure "--spam-threshold is a setting of SPAM.*the checkpoint's optimizer is adamw" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$WORK/b/ckpt.bin" --spam-threshold 10 ;;
  *) fail "unknown case '$case_'" ;;
esac
echo "resume $case_: ok"
