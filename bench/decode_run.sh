#!/usr/bin/env bash
# bench/decode_run.sh — the generation benchmark in one command: builds decode_bench (kernels
# for D = 64, R in {0, 4} only), runs it (both arms, batch 1 and 16, graphs on and off), runs
# the Hugging Face peer (bench/hf_generate.py: GPT2LMHeadModel.generate(), eager, static cache,
# static cache + torch.compile) on the same GPU, and prints the comparison table last
# (bench/compare_decode.py). Writes bench/results/<device>-<date>-decode.json (and copies it,
# with the log, to "$OUT" when that is set).
#
#   bash bench/decode_run.sh                       GPT-2 124M, prompt 128, 256 new tokens, bf16
#   RA_DECODE_ARGS="--batch 1" ...                 flags both programs take (--batch --prompt
#                                                  --new-tokens --seed --warmup --repeats)
#   RA_DECODE_CHECKPOINT=runs/base/ckpt.bin ...    the same trained weights on both sides
#   RA_HF_VARIANTS=eager,static,compile,auto ...   the HF variants (default: the first three)
# transformers is not part of the GPU image: on a machine with internet,
#   pip download transformers tokenizers safetensors huggingface_hub regex -d .whl-hf
# (pip resolves their dependencies too), carry .whl-hf along, and this script installs them
# with `pip install --no-index --target /tmp/hf-site .whl-hf/*.whl` and puts /tmp/hf-site on
# PYTHONPATH (RA_HF_WHEELS names another folder; an importable transformers is used as is).
# Environment: RA_BENCH_ARCH (default 90a), RA_BENCH_BUILD (build folder, default
# build-decode), PYTHON (default python3), RA_COMMIT (default: git rev-parse).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
arch=${RA_BENCH_ARCH:-90a}
build=${RA_BENCH_BUILD:-build-decode}
python=${PYTHON:-python3}
wheels=${RA_HF_WHEELS:-.whl-hf}
read -r -a extra <<<"${RA_DECODE_ARGS:-}"
ra_args=() hf_args=(--variants "${RA_HF_VARIANTS:-eager,static,compile}")
if [[ -n "${RA_DECODE_CHECKPOINT:-}" ]]; then
  ra_args+=(--checkpoint "$RA_DECODE_CHECKPOINT")
  hf_args+=(--ra-checkpoint "$RA_DECODE_CHECKPOINT")
fi
if [[ -z "${RA_COMMIT:-}" ]]; then
  RA_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [[ $RA_COMMIT != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then RA_COMMIT+="-dirty"; fi
fi
export RA_COMMIT
mkdir -p "$build" bench/results
log=$build/decode_run.log
{
  echo "== decode bench: commit $RA_COMMIT, arch $arch"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
  if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
      -DRA_BUILD_TESTS=OFF -DRA_BUILD_EXAMPLES=OFF -DRA_BUILD_BENCH=ON \
      -DRA_CUDA_HEAD_DIMS=64 "-DRA_CUDA_RANKS=0;4" ${CMAKE_PREFIX_PATH:+"-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH"} \
      >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
  fi
  cmake --build "$build" --target decode_bench -j"$(nproc)" >"$build/build.log" 2>&1 ||
    { tail -n 60 "$build/build.log"; exit 1; }
  exe=$(find "$build" -name decode_bench -type f -perm -u+x | head -n 1)
  echo "== $exe ${extra[*]} ${ra_args[*]}"
  "$exe" "${extra[@]}" "${ra_args[@]}" --json "$build/ra_decode.json" || echo "decode_bench failed"
  if ! "$python" -c "import transformers" 2>/dev/null && [[ -d $wheels ]]; then
    echo "== installing transformers from $wheels into /tmp/hf-site"
    "$python" -m pip install -q --no-index --target /tmp/hf-site "$wheels"/*.whl ||
      echo "pip install from $wheels failed"
    export PYTHONPATH=/tmp/hf-site${PYTHONPATH:+:$PYTHONPATH}
  fi
  echo "== $python bench/hf_generate.py ${extra[*]} ${hf_args[*]}"
  "$python" bench/hf_generate.py "${extra[@]}" "${hf_args[@]}" --json "$build/hf_decode.json" ||
    echo "hf_generate.py failed"
} 2>&1 | tee "$log"
device=$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" "$build/ra_decode.json" 2>/dev/null || echo gpu)
name="bench/results/$(echo "$device" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')-$(date -u +%F)-decode.json"
"$python" bench/compare_decode.py "$build/ra_decode.json" "$build/hf_decode.json" "$name" | tee -a "$log"
echo "wrote $name"
if [[ -n "${OUT:-}" ]]; then cp "$name" "$log" "$OUT/"; fi
