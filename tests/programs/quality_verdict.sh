#!/usr/bin/env bash
# tests/programs/quality_verdict.sh — quality_test's paired statistic, verdict and resumable
# runs, driven with a stand-in trainer (fake_trainer.sh) whose validation losses are chosen:
#
#   quality_verdict.sh BIN DATA WORK CASE
#
#   better   d = -0.02, -0.01, -0.03, -0.02: mean -0.02, sd 0.008165, t(0.975, 3) 3.182446,
#            95% CI [-0.0330, -0.0070] wholly below zero: "RA better"
#   none     d = -0.02, +0.01, -0.01, 0: CI [-0.0255, +0.0155] holds zero: "no difference"
#   worse    d = 0.03, 0.02, 0.025: mean 0.025, sd 0.005, t(0.975, 2) 4.302653,
#            CI [+0.0126, +0.0374] wholly above zero: "RA worse"
#   resume   a deadline stops the runs (exit 3, "INCOMPLETE", no verdict); the same command
#            with --resume-runs finishes them in chunks, with the verdict of an
#            uninterrupted call
#   per_seed   --runs-only runs one seed per process (as one per GPU) without a verdict; the
#              call with every seed and --resume-runs reuses those runs (no trainer call) and
#              gives the verdict; --runs-only without --resume-runs is refused by name
source "$(dirname "$0")/common.sh"
case_=$4
Q=("$BIN/quality_test" --data "$DATA" --trainer "$(dirname "$0")/fake_trainer.sh" --no-plot
   --mode tokens --token-budget 2048)
expect_failure() { "$(dirname "$0")/expect_failure.sh" "$@"; }
check() { grep -qF -- "$1" "$2" || fail "'$1' not in $2: $(grep -i 'ci\|verdict' "$2")"; }

case "$case_" in
  better)
    FAKE_LOSSES="1:baseline:3.00 1:ra:2.98 2:baseline:3.10 2:ra:3.09 3:baseline:2.95 3:ra:2.92 4:baseline:3.05 4:ra:3.03" \
      "${Q[@]}" --seeds 1,2,3,4 --out "$WORK/q" >"$WORK/log"
    check "mean -0.0200, sd 0.0082, t(0.975, 3) 3.1824, 95% CI [-0.0330, -0.0070] nats" "$WORK/log"
    check "verdict (docs/quality/VERDICT_RULE.md): RA better (95% CI of the paired difference [-0.0330, -0.0070] nats, 4 seeds, wholly below zero)" "$WORK/log"
    check '"ci95": [-0.0329' "$WORK/q/quality.json"
    check '"gate_curve": [[1, 0, 0, 0.9, 0.01]' "$WORK/q/quality.json" ;;
  none)
    FAKE_LOSSES="1:baseline:3.00 1:ra:2.98 2:baseline:3.10 2:ra:3.11 3:baseline:2.95 3:ra:2.94 4:baseline:3.05 4:ra:3.05" \
      "${Q[@]}" --seeds 1,2,3,4 --out "$WORK/q" >"$WORK/log"
    check "95% CI [-0.0255, +0.0155] nats" "$WORK/log"
    check "no difference detected at this budget (95% CI of the paired difference [-0.0255, +0.0155] nats, 4 seeds)" "$WORK/log" ;;
  worse)
    FAKE_LOSSES="1:baseline:3.00 1:ra:3.03 2:baseline:3.10 2:ra:3.12 3:baseline:2.95 3:ra:2.975" \
      "${Q[@]}" --seeds 1,2,3 --out "$WORK/q" >"$WORK/log"
    check "t(0.975, 2) 4.3027, 95% CI [+0.0126, +0.0374] nats" "$WORK/log"
    check "RA worse (95% CI" "$WORK/log" ;;
  resume)
    export FAKE_LOSSES="1:baseline:3.00 1:ra:2.98 2:baseline:3.10 2:ra:3.09"
    "${Q[@]}" --seeds 1,2 --out "$WORK/straight" >"$WORK/straight.log"
    set +e
    FAKE_SLEEP=0.3 "${Q[@]}" --seeds 1,2 --out "$WORK/q" --chunk-steps 1 --deadline-s 0.5 \
      >"$WORK/log1"
    rc=$?
    set -e
    ((rc == 3)) || fail "a deadline passed gave exit status $rc, expected 3"
    check "INCOMPLETE" "$WORK/log1"
    ! grep -q "verdict (docs" "$WORK/log1" || fail "an incomplete call printed a verdict"
    "${Q[@]}" --seeds 1,2 --out "$WORK/q" --chunk-steps 1 --resume-runs >"$WORK/log2"
    [[ $(grep -c "fake_trainer: baseline seed 1" "$WORK/q/tokens/seed1_baseline/train.log") == 4 ]] ||
      fail "seed 1's baseline did not take 4 one-step calls: $(cat "$WORK/q/tokens/seed1_baseline/train.log")"
    grep -q "verdict (docs" "$WORK/log2" || fail "the finishing call printed no verdict"
    diff <(grep "verdict (docs" "$WORK/straight.log") <(grep "verdict (docs" "$WORK/log2") ||
      fail "the resumed verdict differs from the straight one"
    diff <(cut -f1,2,5 "$WORK/straight/tokens/seed2_ra/metrics.tsv") \
      <(cut -f1,2,5 "$WORK/q/tokens/seed2_ra/metrics.tsv" | grep -v '^val	[123]	') ||
      fail "the resumed run's rows differ" ;;
  per_seed)
    export FAKE_LOSSES="1:baseline:3.00 1:ra:2.98 2:baseline:3.10 2:ra:3.082 3:baseline:2.95 3:ra:2.928"
    for s in 1 2 3; do
      "${Q[@]}" --seeds $s --out "$WORK/q" --runs-only --resume-runs >"$WORK/log$s"
      check "2 runs finished (--runs-only: no verdict" "$WORK/log$s"
      ! grep -q "verdict (docs" "$WORK/log$s" || fail "--runs-only printed a verdict"
    done
    [[ ! -e "$WORK/q/quality.json" ]] || fail "--runs-only wrote quality.json"
    "${Q[@]}" --seeds 1,2,3 --out "$WORK/q" --resume-runs >"$WORK/log"
    for s in 1 2 3; do
      [[ $(grep -c "fake_trainer:" "$WORK/q/tokens/seed${s}_ra/train.log") == 1 ]] ||
        fail "seed $s's RA run was trained again by the verdict call"
    done
    check "mean -0.0200, sd 0.0020, t(0.975, 2) 4.3027, 95% CI [-0.0250, -0.0150] nats" "$WORK/log"
    check "verdict (docs/quality/VERDICT_RULE.md): RA better" "$WORK/log"
    expect_failure "--runs-only needs --mode tokens and --resume-runs" \
      "${Q[@]}" --seeds 1 --out "$WORK/q2" --runs-only
    expect_failure "--seeds has 1 seed\(s\), expected at least 2" \
      "${Q[@]}" --seeds 1 --out "$WORK/q2" ;;
  *) fail "unknown case '$case_'" ;;
esac
echo "quality_verdict $case_: ok"
