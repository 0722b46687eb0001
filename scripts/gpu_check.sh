#!/usr/bin/env bash
# scripts/gpu_check.sh — everything the GPU machine must show, in one command:
# build (sm_90a), the GPU tests, compute-sanitizer memcheck and racecheck on the [sanitize]
# set, the tile re-check and the benchmarks with the PyTorch peers. Logs and JSON go to
# $OUT (or out/); the summary table is printed last.
#
#   bash scripts/gpu_check.sh [--no-bench] [--no-tests] [--no-sanitize]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
run_tests=1 run_sanitize=1 run_bench=1 run_tune=1
for a in "$@"; do
  case $a in
    --no-tests) run_tests=0 ;;
    --no-sanitize) run_sanitize=0 ;;
    --no-bench) run_bench=0 ;;
    --no-tune) run_tune=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
summary=()
note() { summary+=("$1"); echo "== $1"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
t0=$(date +%s)
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DRA_BUILD_EXAMPLES=OFF >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
targets=(ra_cuda_tests ra_bench flash_tune)
cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" >"$OUT/build.log" 2>&1 \
  || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
note "build: $(( $(date +%s) - t0 )) s"
tests_bin=$(find build-gpu -name ra_cuda_tests -type f | head -1)

status=0
if (( run_tests )); then
  t0=$(date +%s)
  RA_TEST_EXPECT_WGMMA=1 "$tests_bin" --order rand --durations no >"$OUT/cuda_tests.log" 2>&1; rc=$?
  tail -4 "$OUT/cuda_tests.log"
  note "GPU tests: rc=$rc, $(grep -E '^(All tests passed|test cases:)' "$OUT/cuda_tests.log" | tail -1), $(( $(date +%s) - t0 )) s"
  (( rc == 0 )) || { status=1; grep -B5 -A15 "FAILED" "$OUT/cuda_tests.log" | head -80; }
fi
if (( run_sanitize )); then
  for tool in memcheck racecheck; do
    t0=$(date +%s)
    compute-sanitizer --tool $tool --error-exitcode 99 "$tests_bin" "[sanitize]" \
      >"$OUT/sanitize_$tool.log" 2>&1; rc=$?
    note "compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1), $(( $(date +%s) - t0 )) s"
    (( rc == 0 )) || { status=1; head -40 "$OUT/sanitize_$tool.log"; }
  done
fi
if (( run_tune )); then
  "$(find build-gpu -name flash_tune -type f | head -1)" --json "$OUT/flash_tune.json" \
    >"$OUT/flash_tune.log" 2>&1 || status=1
  cat "$OUT/flash_tune.log" | tail -30
fi
if (( run_bench )); then
  RA_BENCH_BUILD=build-gpu bash bench/run.sh >"$OUT/bench.log" 2>&1 || status=1
fi
echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
(( run_bench )) && tail -60 "$OUT/bench.log"
exit $status
