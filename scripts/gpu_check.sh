#!/usr/bin/env bash
# scripts/gpu_check.sh — what the GPU machine must show, in one command: build for sm_90a,
# the GPU tests (every (D, R, dtype, gate mode), both tensor-core paths, the GPT-2 training
# layers and model), compute-sanitizer memcheck and racecheck on the [sanitize] set, the tile
# re-check, the attention benchmark with the PyTorch peers and (--train-bench) the GPT-2
# training-step benchmark. Logs go to gpu-logs/ (and, packed, to $OUT); the summary is printed
# last.
#
#   bash scripts/gpu_check.sh [--no-tests] [--no-sanitize] [--no-tune] [--no-bench]
#                             [--train-bench] [--narrow] [--tests-filter SPEC]
#
# --narrow compiles the kernels of D = 64, R in {0, 4} only (build-gpu-narrow/): a quick
# iteration build; the full matrix is the default. Every run of the GPU tests here fails when
# its filter matches no test case or a test case asserts nothing: the runner
# (tests/cuda/main.cu) turns on Catch's NoTests and NoAssertions warnings itself.
#
# Where the machine has no Eigen or Catch2 (the GPU image), a folder .devdeps/usr holding
# copies of them (not part of the repository) is put on CMAKE_PREFIX_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$PWD/gpu-logs
mkdir -p "$logs"
export PYTHONUNBUFFERED=1
run_tests=1 run_sanitize=1 run_bench=1 run_tune=1 run_train=0 narrow=0 filter=""
while (( $# )); do
  case $1 in
    --no-tests) run_tests=0 ;;
    --no-sanitize) run_sanitize=0 ;;
    --no-bench) run_bench=0 ;;
    --no-tune) run_tune=0 ;;
    --train-bench) run_train=1 ;;
    --narrow) narrow=1 ;;
    --tests-filter) filter=$2; shift ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
summary=()
note() { summary+=("$1"); echo "== $1"; pack; }
pack() {
  if [[ -n "${OUT:-}" ]]; then
    tar czf "$OUT/gpu-logs.tgz" -C "$PWD" gpu-logs 2>/dev/null
    cp "$logs"/*.json "$OUT/" 2>/dev/null
  fi
}
trap pack EXIT

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
  | tee "$logs/gpu.txt"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
prefix=(); [[ -d .devdeps/usr ]] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.devdeps/usr")
t0=$SECONDS
build=build-gpu lists=()
(( narrow )) && build=build-gpu-narrow lists=(-DRA_CUDA_HEAD_DIMS=64 "-DRA_CUDA_RANKS=0;4")
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B $build "${gen[@]}" "${prefix[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DRA_BUILD_EXAMPLES=ON "${lists[@]}" \
    >"$logs/configure.log" 2>&1 || { tail -30 "$logs/configure.log"; exit 1; }
fi
targets=(ra_cuda_tests)
(( run_bench || run_tune )) && targets+=(ra_bench flash_tune)
(( run_train )) && targets+=(gpt2_step train_gpt2 quality_test)
cmake --build $build -j "$(nproc)" --target "${targets[@]}" >"$logs/build.log" 2>&1 \
  || { grep -E "error|Error" "$logs/build.log" | head -40; exit 1; }
note "build: $(( SECONDS - t0 )) s"
tests_bin=$(find $build -name ra_cuda_tests -type f | head -1)

status=0
if (( run_tests )); then
  t0=$SECONDS
  RA_TEST_EXPECT_WGMMA=1 "$tests_bin" ${filter:+"$filter"} --durations no \
    >"$logs/cuda_tests.log" 2>&1; rc=$?
  note "GPU tests${filter:+ ($filter)}: rc=$rc, $(grep -E '^(All tests passed|test cases:)' "$logs/cuda_tests.log" | tail -1), $(( SECONDS - t0 )) s"
  (( rc == 0 )) || { status=1; grep -m3 "No test cases matched" "$logs/cuda_tests.log"
                     grep -B3 -A25 -m 6 "FAILED" "$logs/cuda_tests.log" | head -150; }
fi
if (( run_sanitize )); then
  for tool in memcheck racecheck; do
    t0=$SECONDS
    compute-sanitizer --tool $tool --error-exitcode 99 "$tests_bin" "[sanitize]" \
      >"$logs/sanitize_$tool.log" 2>&1; rc=$?
    note "compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/sanitize_$tool.log" | tail -1), $(( SECONDS - t0 )) s"
    (( rc == 0 )) || { status=1; grep -v "^=========     " "$logs/sanitize_$tool.log" | head -40; }
  done
fi
if (( run_tune )); then
  "$(find $build -name flash_tune -type f | head -1)" --json "$logs/flash_tune.json" \
    >"$logs/flash_tune.log" 2>&1 || status=1
  tail -60 "$logs/flash_tune.log"
  pack
fi
if (( run_bench )); then
  RA_BENCH_BUILD=$build bash bench/run.sh >"$logs/bench.log" 2>&1 || status=1
  pack
fi
if (( run_train )); then
  RA_BENCH_BUILD=$build bash bench/train_run.sh >"$logs/train_bench.log" 2>&1 || status=1
  note "train bench: $(grep -E '^target' "$logs/train_bench.log" | tr '\n' ' ')"
fi
echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
(( run_bench )) && tail -70 "$logs/bench.log"
(( run_train )) && tail -20 "$logs/train_bench.log"
exit $status
