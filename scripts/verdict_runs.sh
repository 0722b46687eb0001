#!/usr/bin/env bash
# scripts/verdict_runs.sh — the main comparison of issue 12 on a machine of several GPUs
# (docs/quality/PLAN-100M.md): GPT-2 124M shape, baseline against RA (R = 4, learnable
# per-layer gates), --seeds (default 1,2,3,4), >= 100M tokens per run, judged by the rule of
# docs/quality/VERDICT_RULE.md. One quality_test --runs-only process per seed, each on its own
# GPU (seed k on GPU k mod the GPU count), running its baseline then its RA run in chunks
# with checkpoints; when every run has reached the budget, one last quality_test call with all
# seeds reuses them and prints the verdict.
#
#   DATA=build/data-bpe bash scripts/verdict_runs.sh OUT_DIR [quality_test options...]
#
# Resumable: each process stops starting trainer calls after DEADLINE_S seconds (default
# 500, inside a 10-minute device call) and the script then exits with status 3; the same
# command again, on the same machine, continues every run from its checkpoint (bit-exact).
# Extra options go to every call alike (a follow-up: --gates per_head, --optimizer
# adamw_spam, --R 16, ...; use another OUT_DIR for each). Environment: SEEDS, TOKENS
# (default 100007936 = 6104 steps of 16 x 1024), DEADLINE_S, DATA, RA_QUALITY_BUILD.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${1:?usage: verdict_runs.sh OUT_DIR [quality_test options]}
shift
seeds=${SEEDS:-1,2,3,4}
data=${DATA:-build/data-bpe}
read -r trainer quality < <(DATA="$data" bash scripts/gpu_quality.sh --build-only | tail -1)
gpus=$(nvidia-smi -L | grep -c '^GPU')
((gpus > 0)) || { echo "verdict_runs.sh: no GPU" >&2; exit 1; }
flags=(--data "$data" --out "$out_dir" --trainer "$trainer" --device cuda --precision bf16
       --mode tokens --resume-runs --layers 12 --heads 12 --C 768 --seq 1024 --batch 16
       --token-budget "${TOKENS:-100007936}" --lr 6e-4 --min-lr 6e-5 --warmup 256
       --eval-every 500 --eval-batches 32 --log-every 250 --R 4 --gates per_layer
       --chunk-steps 500 "$@")
mkdir -p "$out_dir"
echo "== $(date -u +%FT%TZ) $quality ${flags[*]} (seeds $seeds on $gpus GPUs)" | tee -a "$out_dir/calls.log"
pids=() k=0
for s in ${seeds//,/ }; do
  CUDA_VISIBLE_DEVICES=$((k % gpus)) "$quality" "${flags[@]}" --seeds "$s" --runs-only \
    --deadline-s "${DEADLINE_S:-500}" >>"$out_dir/seed$s.log" 2>&1 &
  pids+=($!)
  k=$((k + 1))
done
failed=0 incomplete=0
for p in "${pids[@]}"; do
  rc=0
  wait "$p" || rc=$?
  ((rc == 3)) && incomplete=1
  ((rc != 0 && rc != 3)) && failed=$rc
done
tail -n 3 "$out_dir"/seed*.log
((failed == 0)) || { echo "verdict_runs.sh: a run failed (status $failed), see $out_dir/seed*.log" >&2; exit 1; }
if ((incomplete)); then
  echo "verdict_runs.sh: INCOMPLETE (a deadline passed): run the same command again" | tee -a "$out_dir/calls.log"
  exit 3
fi
"$quality" "${flags[@]}" --seeds "$seeds" 2>&1 | tee "$out_dir/quality.log"
echo "== $(date -u +%FT%TZ) verdict written" >>"$out_dir/calls.log"
