#!/usr/bin/env bash
# tests/programs/full_disk.sh — on a full disk every program says so and claims nothing.
#
#   full_disk.sh BIN DATA WORK CASE
#
# Each CASE makes one file a program writes fail as on a full disk, by placing a symbolic link
# to /dev/full (every write to it fails with ENOSPC) where the program writes it: metrics.tsv
# itself (a fresh run with --overwrite opens it for writing), or the temporary file beside a
# file written atomically (summary.json.tmp, ...). The program must exit with status 1 naming
# the file and "No space left on device", print no "wrote ...", and leave no temporary file
# (the link is removed with it). CASE tmpfs instead fills a real 256 KiB tmpfs where one can be
# mounted (root) and exits 77 (skipped) where it cannot.
#   metrics summary_json summary_tsv gates checkpoint stdout    train_gpt2
#   tokens manifest                                             prepare_data
#   quality                                                     quality_test (quality.json)
#   tmpfs                                                       train_gpt2 on a small tmpfs
source "$(dirname "$0")/common.sh"
case_=$4
run=("${TINY[@]}" --steps 4 --eval-every 2)
full="No space left on device"

# expect_full FILE COMMAND...: COMMAND fails naming FILE and the reason; FILE.tmp is gone.
expect_full() {
  local file=$1
  shift
  "$(dirname "$0")/expect_failure.sh" "'${file//./\\.}'.*$full" "$@"
  if [[ "$file" == *.tmp && -e "$file" || -L "$file" && "$file" == *.tmp ]]; then
    fail "the partial $file was left behind"
  fi
}

out="$WORK/out"
mkdir -p "$out"
case "$case_" in
  metrics)
    ln -s /dev/full "$out/metrics.tsv"
    expect_full "$out/metrics.tsv" "$TRAIN" "${run[@]}" --out "$out" --overwrite ;;
  summary_json | summary_tsv | gates | checkpoint)
    declare -A file=([summary_json]=summary.json [summary_tsv]=summary.tsv [gates]=gates.tsv
                     [checkpoint]=ckpt.bin)
    ln -s /dev/full "$out/${file[$case_]}.tmp"
    expect_full "$out/${file[$case_]}.tmp" "$TRAIN" "${run[@]}" --out "$out" ;;
  stdout)
    rc=0
    "$TRAIN" "${run[@]}" --out "$out" >/dev/full 2>"$WORK/err" || rc=$?
    ((rc == 1)) || fail "exit status $rc with stdout on a full disk, expected 1"
    grep -q "stdout.*$full" "$WORK/err" || fail "stderr does not name stdout: $(cat "$WORK/err")" ;;
  tokens | manifest)
    declare -A file=([tokens]=train.bin [manifest]=manifest.tsv)
    src=$(dirname "$0")/../../data/sample
    ln -s /dev/full "$out/${file[$case_]}.tmp"
    expect_full "$out/${file[$case_]}.tmp" "$BIN/prepare_data" --input "$src" --out "$out" ;;
  quality)
    ln -s /dev/full "$out/quality.json.tmp"
    expect_full "$out/quality.json.tmp" "$BIN/quality_test" --data "$DATA" --out "$out" \
      --no-plot --seeds 1,2 --mode tokens --token-budget 128 --layers 1 --heads 1 --C 64 \
      --seq 16 --batch 4 --eval-every 4 --eval-batches 2 ;;
  tmpfs)
    mount -t tmpfs -o size=256k tmpfs "$out" 2>/dev/null || {
      echo "skipped: cannot mount a tmpfs here (needs root); the /dev/full cases cover the rest"
      exit 77
    }
    trap 'umount "$out"' EXIT
    # The checkpoint (about 870 KB) cannot fit: its write fails midway, for real.
    expect_full "$out/ckpt.bin.tmp" "$TRAIN" "${run[@]}" --out "$out" --ckpt-every 1 ;;
  *) fail "unknown case '$case_'" ;;
esac
echo "full_disk $case_: ok"
