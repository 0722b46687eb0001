#!/usr/bin/env bash
# bench/train_run.sh — the GPT-2 training-step benchmark in one command: builds gpt2_step
# (kernels for D = 64, R in {0, 4} only), runs it for both arms, runs the PyTorch peer
# (bench/torch_gpt2.py: nanoGPT under torch.compile and eager) on the same GPU, and prints the
# table last. Writes bench/results/<device>-<date>-train.json (and copies it, with the log, to
# "$OUT" when that is set).
#
#   bash bench/train_run.sh            GPT-2 124M, B=16, T=1024, bf16
#   RA_TRAIN_ARGS="--batch 8" ...      extra flags for both programs (same names)
# Environment: RA_BENCH_ARCH (default 90a), RA_BENCH_BUILD (build folder, default
# build-train), PYTHON (default python3), RA_COMMIT (default: git rev-parse).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
arch=${RA_BENCH_ARCH:-90a}
build=${RA_BENCH_BUILD:-build-train}
python=${PYTHON:-python3}
read -r -a extra <<<"${RA_TRAIN_ARGS:-}"
if [[ -z "${RA_COMMIT:-}" ]]; then
  RA_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [[ $RA_COMMIT != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then RA_COMMIT+="-dirty"; fi
fi
export RA_COMMIT
mkdir -p "$build" bench/results
log=$build/train_run.log
{
  echo "== train bench: commit $RA_COMMIT, arch $arch"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
  if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
      -DRA_BUILD_TESTS=OFF -DRA_BUILD_EXAMPLES=OFF -DRA_BUILD_BENCH=ON \
      -DRA_CUDA_HEAD_DIMS=64 "-DRA_CUDA_RANKS=0;4" >"$build/configure.log" 2>&1 ||
      { cat "$build/configure.log"; exit 1; }
  fi
  cmake --build "$build" --target gpt2_step -j"$(nproc)" >"$build/build.log" 2>&1 ||
    { tail -n 60 "$build/build.log"; exit 1; }
  exe=$(find "$build" -name gpt2_step -type f -perm -u+x | head -n 1)
  echo "== $exe ${extra[*]}"
  "$exe" "${extra[@]}" --json "$build/ra_train.json" || echo "gpt2_step failed"
  echo "== $python bench/torch_gpt2.py ${extra[*]}"
  "$python" bench/torch_gpt2.py "${extra[@]}" --json "$build/torch_train.json" || echo "torch_gpt2.py failed"
} 2>&1 | tee "$log"
device=$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" "$build/ra_train.json" 2>/dev/null || echo gpu)
name="bench/results/$(echo "$device" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')-$(date -u +%F)-train.json"
"$python" bench/compare_train.py "$build/ra_train.json" "$build/torch_train.json" "$name" | tee -a "$log"
echo "wrote $name"
if [[ -n "${OUT:-}" ]]; then cp "$name" "$log" "$OUT/"; fi
