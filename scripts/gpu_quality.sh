#!/usr/bin/env bash
# scripts/gpu_quality.sh — the quality comparison of RA against the baseline on the GPU:
# builds train_gpt2 (with its CUDA half) and quality_test, then runs quality_test with
# --device cuda --precision bf16 and the given options, writing OUT_DIR (default
# build-quality/) and, when $OUT is set, a copy of it there.
#
#   bash scripts/gpu_quality.sh OUT_DIR [quality_test options...]
#   bash scripts/gpu_quality.sh --build-only      (data and build only: scripts/verdict_runs.sh)
#
# Data: DATA (default build/data) must hold train.bin and val.bin from scripts/prepare_data.sh.
# A machine without the linux-doc package (a GPU image without apt) can be given the files
# xz-compressed in .devdata/ (train.bin.xz, val.bin.xz, manifest.tsv.xz, SOURCE.xz): they are
# unpacked into DATA first. Build: build-gpu-narrow/ (D = 64, R in {0, 4}), as
# scripts/gpu_check.sh --narrow makes it.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${1:?usage: gpu_quality.sh OUT_DIR [quality_test options] | --build-only}
shift
data=${DATA:-build/data}
build=${RA_QUALITY_BUILD:-build-gpu-narrow}
if [[ ! -f $data/train.bin && -f .devdata/train.bin.xz ]]; then
  mkdir -p "$data"
  for f in .devdata/*.xz; do
    python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" \
      "$f" "$data/$(basename "${f%.xz}")"
  done
fi
[[ -f $data/train.bin ]] || { echo "gpu_quality.sh: no $data/train.bin (run scripts/prepare_data.sh)" >&2; exit 1; }
cat "$data/SOURCE" 2>/dev/null || true
if [[ ! -f $build/CMakeCache.txt ]]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  prefix=(); [[ -d .devdeps/usr ]] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.devdeps/usr")
  cmake -S . -B "$build" "${gen[@]}" "${prefix[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DRA_BUILD_EXAMPLES=ON -DRA_CUDA_HEAD_DIMS=64 \
    "-DRA_CUDA_RANKS=0;4" >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target train_gpt2 quality_test >/dev/null
trainer=$(find "$build" -name train_gpt2 -type f -perm -u+x | head -1)
quality=$(find "$build" -name quality_test -type f -perm -u+x | head -1)
if [[ $out_dir == --build-only ]]; then echo "$trainer $quality"; exit 0; fi
mkdir -p "$out_dir"
echo "== $quality --data $data --out $out_dir --trainer $trainer --device cuda --precision bf16 $*"
"$quality" --data "$data" --out "$out_dir" --trainer "$trainer" --device cuda --precision bf16 "$@" \
  2>&1 | tee "$out_dir/quality.log"
if [[ -n "${OUT:-}" ]]; then cp -r "$out_dir" "$OUT/"; fi
