#!/usr/bin/env bash
# tests/programs/kill_resume.sh — SIGKILL during checkpoint writes never costs a run its work.
#
#   kill_resume.sh BIN DATA WORK [SEED]
#
# The same run twice: once straight through; once killed with SIGKILL at random moments and
# resumed from whatever checkpoint survived, again and again. Every step writes a checkpoint
# (--ckpt-every 1: written, synced, renamed), so most of a run's time is spent writing one and
# most kills land inside a write; a kill that left ckpt.bin.tmp behind was one. The test goes
# on until 3 kills landed inside a write or 40 starts were made (failing if none did; a run
# that finished before its kill is started afresh), then lets the run finish. Each restart must load the surviving checkpoint (a resume that fails fails the
# test), and the finished run must equal the straight one bit for bit: the same parameters
# (CRC-32C in summary.tsv) and the same metrics.tsv rows (kind, step, tokens, loss, lr,
# gradient norm: every step exactly once), with no temporary file left. The random delays come
# from SEED (printed; default: the clock).
source "$(dirname "$0")/common.sh"
seed=${4:-$(date +%s%N | cut -c10-18)}
RANDOM=$((seed % 32768))
echo "kill_resume: seed $seed"
run=("${TINY[@]}" --arm ra --R 4 --gates per_head --restart --dropout 0.1 --steps 60
     --eval-every 5 --ckpt-every 1)

"$TRAIN" "${run[@]}" --out "$WORK/straight" >"$WORK/straight.log" 2>&1 ||
  fail "the straight run failed: $(tail -3 "$WORK/straight.log")"

cut="$WORK/cut"
attempts=0 kills=0 torn=0
while ((attempts < 40 && torn < 3)); do
  attempts=$((attempts + 1))
  if [[ -f "$cut/ckpt.bin" || -f "$cut/ckpt.bin.prev" ]]; then
    args=(--resume "$cut/ckpt.bin")
  else
    args=(--overwrite)  # killed before its first checkpoint: start again
  fi
  "$TRAIN" "${run[@]}" --out "$cut" "${args[@]}" >"$WORK/cut.$attempts.log" 2>&1 &
  pid=$!
  # 0.15 .. 1.05 s: mostly past start-up (reading the data), into the steps.
  ms=$((150 + RANDOM % 900))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  if kill -KILL "$pid" 2>/dev/null; then
    kills=$((kills + 1))
    [[ -f "$cut/ckpt.bin.tmp" ]] && torn=$((torn + 1))
  fi
  rc=0
  { wait "$pid"; } 2>/dev/null || rc=$?
  # 137: our SIGKILL. Anything else but 0 means the survivor could not be resumed.
  ((rc == 0 || rc == 137)) ||
    fail "start $attempts exited with $rc: $(tail -3 "$WORK/cut.$attempts.log")"
  # Finished before the kill came: kill a new run from the start.
  ((rc == 0)) && rm -rf "$cut"
done
echo "kill_resume: $attempts starts, $kills SIGKILLs, $torn of them inside a checkpoint write"
((torn >= 1)) || fail "no kill landed inside a checkpoint write in $attempts attempts"

"$TRAIN" "${run[@]}" --out "$cut" --resume "$cut/ckpt.bin" >"$WORK/cut.final.log" 2>&1 ||
  fail "the final resume failed: $(tail -3 "$WORK/cut.final.log")"
grep -q '^resumed ' "$WORK/cut.final.log" || fail "the final run did not resume"

unique_steps "$cut/metrics.tsv"
diff <(metrics_values "$WORK/straight/metrics.tsv") <(metrics_values "$cut/metrics.tsv") ||
  fail "metrics.tsv of the killed-and-resumed run differs from the straight run's"
[[ "$(params_crc "$WORK/straight")" == "$(params_crc "$cut")" ]] ||
  fail "final parameters differ: CRC-32C $(params_crc "$WORK/straight") vs $(params_crc "$cut")"
leftover=$(find "$cut" -name '*.tmp')
[[ -z "$leftover" ]] || fail "temporary files left: $leftover"
echo "kill_resume: ok: bit-identical to the straight run (parameters CRC-32C $(params_crc "$cut"))"
