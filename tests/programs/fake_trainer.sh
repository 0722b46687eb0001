#!/usr/bin/env bash
# tests/programs/fake_trainer.sh — a stand-in for train_gpt2 that quality_test can drive
# (--trainer): it writes the files quality_test reads, with the final validation loss of each
# (seed, arm) taken from FAKE_LOSSES ("SEED:ARM:LOSS ..."), so the paired statistic and the
# verdict can be checked against numbers worked out by hand. One step per 512 tokens of
# --token-budget; --resume and --stop-at continue and stop as the real trainer does (ckpt.bin
# holds the step); each call sleeps FAKE_SLEEP seconds (default 0).
set -euo pipefail
out="" arm="" seed="" budget=0 stop=-1 resume=""
while (($#)); do
  case $1 in
    --out) out=$2; shift ;;
    --arm) arm=$2; shift ;;
    --seed) seed=$2; shift ;;
    --token-budget) budget=$2; shift ;;
    --stop-at) stop=$2; shift ;;
    --resume) resume=$2; shift ;;
    --no-bias | --restart) ;;
    --*) shift ;;
  esac
  shift
done
sleep "${FAKE_SLEEP:-0}"
loss=""
for entry in ${FAKE_LOSSES:?}; do
  [[ $entry == "$seed:$arm:"* ]] && loss=${entry##*:}
done
[[ -n $loss ]] || { echo "fake_trainer: no loss for seed $seed arm $arm" >&2; exit 1; }
total=$(((budget + 511) / 512))
step=0
[[ -n $resume ]] && step=$(cat "$resume")
last=$total
((stop >= 0 && stop < total)) && last=$stop
mkdir -p "$out"
[[ -n $resume ]] || printf 'kind\tstep\ttokens\ttrain_s\tloss\tlr\tgrad_norm\ttok_s\n' >"$out/metrics.tsv"
[[ -n $resume ]] || printf 'kind\tstep\tlayer\tgate\tg_std\tg_rec\n' >"$out/gates_curve.tsv"
while ((step < last)); do
  step=$((step + 1))
  printf 'train\t%d\t%d\t%d\t5.0\t0.001\t1.0\t1000.0\n' "$step" $((step * 512)) "$step" >>"$out/metrics.tsv"
  printf 'gate\t%d\t0\t0\t0.9\t%s\n' "$step" "0.0$step" >>"$out/gates_curve.tsv"
done
echo "$step" >"$out/ckpt.bin"
printf 'val\t%d\t%d\t%d\t%s\t0\t0\t0\n' "$step" $((step * 512)) "$step" "$loss" >>"$out/metrics.tsv"
printf 'layer\tg_std_mean\tg_std_min\tg_std_max\tg_rec_mean\tg_rec_min\tg_rec_max\talpha_mean\talpha_min\talpha_max\n0\t0.9\t0.9\t0.9\t0.05\t0.05\t0.05\tnan\tnan\tnan\n' >"$out/gates.tsv"
printf 'arm\t%s\nseed\t%s\nsteps\t%d\ntokens\t%d\ntrain_s\t%d\ntok_s\t1000\nval_loss\t%s\ntrain_loss\t5\nparams\t1\nparams_crc32c\t00000000\ntokenizer\tbyte\nvocab\t257\noptimizer\tadamw\nspam_spikes\t0\n' \
  "$arm" "$seed" "$step" $((step * 512)) "$step" "$loss" >"$out/summary.tsv"
echo "fake_trainer: $arm seed $seed at step $step of $total"
