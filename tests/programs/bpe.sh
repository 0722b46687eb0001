#!/usr/bin/env bash
# tests/programs/bpe.sh — sub-word tokens through the programs (needs a build with
# libsentencepiece; programs.cmake registers it only there).
#
#   bpe.sh BIN DATA WORK CASE      (DATA: token files of a SentencePiece model, from the
#                                   examples.prepare_data_bpe fixture)
#
#   pipeline       train_gpt2 trains on them, records the tokenizer in its summary, resumes
#                  bit-exactly and generates text with the model's decoder; generate (KV
#                  cache) on its checkpoint with --tokenizer-model, and refused without it
#   wrong_model    a tokenizer.model other than the one the tokens name is refused, naming both
#   missing_model  token files without their model are refused, naming the file expected
#   mixed          val.bin of bytes beside train.bin of a model is refused by name
#   byte_resume    a checkpoint trained on byte tokens refuses these tokens on resume
source "$(dirname "$0")/common.sh"
case_=$4
expect_failure() { "$(dirname "$0")/expect_failure.sh" "$@"; }
SAMPLE="$(dirname "$0")/../../data/sample"
name=$(sed -n 's/^# tokenizer\t\([^\t]*\)\t.*/\1/p' "$DATA/manifest.tsv")
[[ $name == sentencepiece:* ]] || fail "the fixture's manifest names no SentencePiece model: '$name'"
copy_data() { mkdir -p "$1" && cp "$DATA"/{train.bin,val.bin,tokenizer.model} "$1/"; }

case "$case_" in
  pipeline)
    "$TRAIN" "${TINY[@]}" --arm ra --steps 4 --eval-every 2 --out "$WORK/straight" >/dev/null
    grep -q "^tokenizer	$name$" "$WORK/straight/summary.tsv" || fail "summary.tsv lacks the tokenizer"
    grep -q "\"tokenizer\": \"$name\"" "$WORK/straight/summary.json" || fail "summary.json lacks it"
    "$TRAIN" "${TINY[@]}" --arm ra --steps 4 --eval-every 2 --stop-at 2 --out "$WORK/a" >/dev/null
    "$TRAIN" "${TINY[@]}" --steps 4 --eval-every 2 --resume "$WORK/a/ckpt.bin" --out "$WORK/a" \
      --generate 12 --top-k 3 --prompt "The kernel" >"$WORK/log"
    [[ "$(params_crc "$WORK/straight")" == "$(params_crc "$WORK/a")" ]] ||
      fail "the resumed run's parameters differ from the straight run's"
    grep -q -- "--- 12 tokens from the prompt" "$WORK/log" || fail "no generated text"
    grep -q "^The kernel" "$WORK/log" || fail "the prompt did not round-trip: $(tail -3 "$WORK/log")"
    # generate (KV cache) on the same checkpoint: the model named by the tokens, or refused.
    "$BIN/generate" --checkpoint "$WORK/a/ckpt.bin" --tokenizer-model "$DATA/tokenizer.model" \
      --prompt "The kernel" --max-new-tokens 4 --top-k 3 --seed 1 >"$WORK/gen" ||
      fail "generate failed: $(tail -3 "$WORK/gen")"
    grep -q "^The kernel" "$WORK/gen" || fail "generate lost the prompt: $(head -3 "$WORK/gen")"
    grep -q "^decode: 4 new tokens" "$WORK/gen" || fail "generate: $(tail -3 "$WORK/gen")"
    expect_failure "trained on SentencePiece tokens '$name', expected --tokenizer-model" \
      "$BIN/generate" --checkpoint "$WORK/a/ckpt.bin" --prompt "The kernel" ;;
  wrong_model)
    copy_data "$WORK/d"
    mkdir -p "$WORK/other"
    "$BIN/prepare_data" --input "$SAMPLE" --ext .rst --out "$WORK/other" --tokenizer sentencepiece \
      --vocab 420 --threads 1 >/dev/null
    cp "$WORK/other/tokenizer.model" "$WORK/d/"
    expect_failure "tokenizer.model' is model 'sentencepiece:[0-9a-f]{64}', but '.*train.bin' holds tokens of '$name'" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/d" --steps 2 ;;
  missing_model)
    copy_data "$WORK/d"
    rm "$WORK/d/tokenizer.model"
    expect_failure "cannot open '.*tokenizer.model'.*expected the SentencePiece model" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/d" --steps 2 ;;
  mixed)
    copy_data "$WORK/d"
    "$BIN/prepare_data" --input "$SAMPLE" --ext .rst --out "$WORK/bytes" >/dev/null
    cp "$WORK/bytes/val.bin" "$WORK/d/"
    expect_failure "val.bin' holds tokens of tokenizer 'byte' with vocab 257, expected tokenizer '$name'" \
      "$TRAIN" "${TINY[@]}" --data "$WORK/d" --steps 2 ;;
  byte_resume)
    "$BIN/prepare_data" --input "$SAMPLE" --ext .rst --out "$WORK/bytes" >/dev/null
    "$TRAIN" "${TINY[@]}" --data "$WORK/bytes" --steps 2 --out "$WORK/b" >/dev/null
    expect_failure "--data .*train.bin: [0-9]+ tokens, CRC-32C" \
      "$TRAIN" "${TINY[@]}" --steps 4 --resume "$WORK/b/ckpt.bin" ;;
  *) fail "unknown case '$case_'" ;;
esac
echo "bpe $case_: ok"
