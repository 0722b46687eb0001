#!/usr/bin/env bash
# tests/programs/generate_devices.sh — examples/generate on both devices from one checkpoint:
#
#   generate_devices.sh GENERATE CHECKPOINT
#
# Greedy decoding in fp32 must print the same text with --device cpu and --device cuda (the
# GPU model's greedy tokens equal the CPU model's; tests/cuda/test_gpt2_decode.cu checks the
# same on the model), and the GPU run must report its per-token latency. Exits 77 (skipped)
# when the program has no CUDA or no GPU is usable.
set -uo pipefail
gen=$1 ckpt=$2
args=(--checkpoint "$ckpt" --prompt "Once" --greedy --max-new-tokens 12 --precision fp32)
cpu=$("$gen" "${args[@]}" --device cpu 2>&1) || { echo "FAIL: --device cpu"; echo "$cpu"; exit 1; }
gpu=$("$gen" "${args[@]}" --device cuda 2>&1)
rc=$?
if ((rc != 0)); then
  if grep -Eq "no usable CUDA device|not built into this program" <<<"$gpu"; then
    echo "skipped: $gpu"
    exit 77
  fi
  echo "FAIL: --device cuda exited with $rc"; echo "$gpu"; exit 1
fi
text() { sed -n '/^---$/q;p' <<<"$1"; }  # the generated text: everything before the stats
if [[ "$(text "$cpu")" != "$(text "$gpu")" ]]; then
  echo "FAIL: greedy text differs between the devices"
  echo "--- cpu:"; echo "$cpu"; echo "--- cuda:"; echo "$gpu"; exit 1
fi
grep -Eq "per-token latency: median .* over 11 decode steps \(cuda, fp32\)" <<<"$gpu" ||
  { echo "FAIL: no per-token latency line for cuda"; echo "$gpu"; exit 1; }
echo "ok: the same greedy text on cpu and cuda"
echo "$gpu" | tail -4
