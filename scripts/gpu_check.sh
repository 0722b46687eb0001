#!/usr/bin/env bash
# scripts/gpu_check.sh — what the GPU machine must show, in one command: build for sm_90a,
# the GPU tests (every (D, R, dtype, gate mode), both tensor-core paths, the GPT-2 training
# layers and model, each by the precision rule of tests/common/precision.hpp), the four
# compute-sanitizer tools (memcheck with leak checking, racecheck, initcheck, synccheck) on the
# [sanitize] set, the mutation check (--mutations), the tile re-check, the attention
# benchmark with the PyTorch peers and (--train-bench) the GPT-2 training-step benchmark. Logs
# go to gpu-logs/ (and, packed, to $OUT); the summary is printed last.
#
#   bash scripts/gpu_check.sh [--no-tests] [--no-sanitize] [--no-tune] [--no-bench]
#                             [--train-bench] [--mutations] [--python] [--torch-bench]
#                             [--narrow] [--tests-filter SPEC]
#
# --python builds the PyTorch binding (python/) for 90a with the image's own python3 (the one
# that holds torch; a venv made from it would not see torch) into /tmp/ra-site, with the
# build tools from the carried wheels in .whl/ when the image lacks them, and runs its CUDA
# tests (python/tests/test_cuda.py) after the C++ GPU tests. gpu-logs/python_env.txt records
# nvcc's version, torch's CUDA and the libcudart torch loaded. When pytest dies on a signal
# (a segfault in native code), the test that was running is re-run under
# `cuda-gdb -batch -ex run -ex bt` into gpu-logs/python_cuda_gdb.log (native backtrace).
# --torch-bench (implies --python) then runs bench/torch_gpt2.py, GPT-2 124M training steps
# under torch.compile with the attention arms baseline (SDPA), baseline_cudnn, ra (gated RA in
# torch ops) and ra_op (ra_torch's op), within RA_TORCH_BENCH_DEADLINE_S (default 420) s, into
# gpu-logs/torch_gpt2_ops.json and a table (gpu-logs/torch_gpt2_ops.log).
#
# --narrow compiles the kernels of D in {64, 128}, R in {0, 4} only (build-gpu-narrow/): a quick
# iteration build; the full matrix is the default. Without --tests-filter the tests run as one
# serial group of the [alloc] cases (they compare device-wide free memory, so nothing else may
# run beside them) and then three groups in parallel. Every run fails when its filter matches
# no test case or a test case asserts nothing: the runner (tests/cuda/main.cu) turns on Catch's
# NoTests and NoAssertions warnings itself, and run_group checks the report's totals too.
#
# Where the machine has no Eigen or Catch2 (the GPU image), a folder .devdeps/usr holding
# copies of them (not part of the repository) is put on CMAKE_PREFIX_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$PWD/gpu-logs
mkdir -p "$logs"
export PYTHONUNBUFFERED=1
run_tests=1 run_sanitize=1 run_bench=1 run_tune=1 run_train=0 run_mutations=0 run_python=0
run_torch_bench=0
narrow=0 filter=""
while (( $# )); do
  case $1 in
    --no-tests) run_tests=0 ;;
    --no-sanitize) run_sanitize=0 ;;
    --no-bench) run_bench=0 ;;
    --no-tune) run_tune=0 ;;
    --train-bench) run_train=1 ;;
    --mutations) run_mutations=1 ;;
    --python) run_python=1 ;;
    --torch-bench) run_python=1 run_torch_bench=1 ;;
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
(( narrow )) && build=build-gpu-narrow lists=("-DRA_CUDA_HEAD_DIMS=64;128" "-DRA_CUDA_RANKS=0;4")
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
# The runner turns on Catch's NoAssertions and NoTests warnings itself (Catch 2.13 takes only
# one -w); run_group and the sanitizer runs also fail a report that ran no test case.
catch_flags=(--durations no)

status=0
# True when the Catch report in $1 ran at least one test case.
ran_tests() {
  grep -qE '^(All tests passed \([0-9]+ assertions? in [1-9][0-9]* test cases?\)|test cases: *[1-9])' "$1"
}
# Runs the GPU tests matching $2 into gpu-logs/$1.log; prints a summary line.
run_group() {
  local name=$1 spec=$2 t=$SECONDS rc
  "$tests_bin" "$spec" "${catch_flags[@]}" >"$logs/$name.log" 2>&1; rc=$?
  if (( rc == 0 )) && ! ran_tests "$logs/$name.log"; then rc=3; fi
  echo "GPU tests $name ($spec): rc=$rc, $(grep -E '^(All tests passed|test cases:)' "$logs/$name.log" | tail -1), $(( SECONDS - t )) s" >"$logs/$name.status"
  return $rc
}
if (( run_tests )); then
  t0=$SECONDS
  if [[ -n $filter ]]; then
    groups=(filtered)
    run_group filtered "$filter"
  else
    groups=(alloc flash flash_backward other)
    run_group alloc "[alloc]"  # alone: compares device-wide free memory
    run_group flash "[flash]~[alloc]" &
    run_group flash_backward "[flash_backward]~[alloc]" &
    run_group other "~[flash]~[flash_backward]~[alloc]" &
    wait
  fi
  for g in "${groups[@]}"; do
    line=$(cat "$logs/$g.status")
    note "$line"
    if [[ $line != *"rc=0,"* ]]; then
      status=1
      grep -B3 -A30 -m 6 "FAILED" "$logs/$g.log" | head -150
    fi
    sed -n '/^precision summary/,$p' "$logs/$g.log" >"$logs/$g.precision.txt"
  done
  note "GPU tests: $(( SECONDS - t0 )) s"
fi
if (( run_python )); then
  t0=$SECONDS
  site=/tmp/ra-site
  mkdir -p "$site"
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl \
      >"$logs/python_build.log" 2>&1
  fi
  py_lists=()
  (( narrow )) && py_lists=("--config-settings=cmake.define.RA_CUDA_HEAD_DIMS=64;128"
                            "--config-settings=cmake.define.RA_CUDA_RANKS=0;4")
  if PYTHONPATH="$site" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" python3 -m pip install \
      --no-build-isolation --no-deps --no-input --target "$site" \
      --config-settings=build-dir="$PWD/build-python" \
      --config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES=90a "${py_lists[@]}" ./python \
      >>"$logs/python_build.log" 2>&1; then
    python_built=1
    {
      nvcc --version | tail -2
      PYTHONPATH="$site" python3 -c "import torch, ra_torch
torch.zeros(1, device='cuda')
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ra_torch.CUDA_BUILT', ra_torch.CUDA_BUILT)
print('libcudart loaded:', sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libcudart' in l}))"
    } >"$logs/python_env.txt" 2>&1
    # -v prints each test's id before it runs: after a crash the last one is the culprit.
    PYTHONPATH="$site" python3 -X faulthandler -m pytest python/tests/test_cuda.py -v -rs \
      -p no:cacheprovider >"$logs/python_cuda.log" 2>&1
    rc=$?
    if (( rc > 128 )) || grep -q "Fatal Python error" "$logs/python_cuda.log"; then
      crashed=$(grep -oE '^python/tests/test_cuda.py::[^ ]+' "$logs/python_cuda.log" | tail -1)
      note "PyTorch binding: pytest died (rc=$rc) in ${crashed:-an unknown test}; cuda-gdb backtrace in gpu-logs/python_cuda_gdb.log"
      grep -A25 "Fatal Python error" "$logs/python_cuda.log" | head -30
      if command -v cuda-gdb >/dev/null; then
        PYTHONPATH="$site" timeout 400 cuda-gdb -batch -ex "set pagination off" -ex run \
          -ex bt -ex "info sharedlibrary" --args python3 -m pytest -x -q -p no:cacheprovider \
          "${crashed:-python/tests/test_cuda.py}" >"$logs/python_cuda_gdb.log" 2>&1
        grep -A40 -m1 "received signal" "$logs/python_cuda_gdb.log" | head -45
      fi
    fi
  else
    rc=2
    tail -30 "$logs/python_build.log"
  fi
  (( rc == 0 )) || status=1
  note "PyTorch binding CUDA tests: rc=$rc, $(tail -1 "$logs/python_cuda.log" 2>/dev/null), $(( SECONDS - t0 )) s"
  if (( run_torch_bench )) && (( ${python_built:-0} )); then
    t0=$SECONDS
    RA_COMMIT=${RA_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)} \
      PYTHONPATH="$site" python3 bench/torch_gpt2.py --arms baseline,baseline_cudnn,ra,ra_op \
      --variants compile --deadline-s "${RA_TORCH_BENCH_DEADLINE_S:-420}" \
      --json "$logs/torch_gpt2_ops.json" >"$logs/torch_gpt2_ops.log" 2>&1 || status=1
    note "torch GPT-2 step (baseline, baseline_cudnn, ra, ra_op; compile): $(( SECONDS - t0 )) s"
    sed -n '/^arm /,/^torch_gpt2: wrote/p' "$logs/torch_gpt2_ops.log"
    python3 - "$logs/torch_gpt2_ops.json" <<'PY' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["results"]:
    print(f"{r['arm']:15} graph_breaks={r.get('graph_breaks')} fullgraph={r.get('fullgraph')} "
          f"attention={r.get('attention')}")
print("sdpa kernels (default):", d["config"].get("sdpa_kernels"))
print("sdpa kernels (cuDNN forced):", d["config"].get("sdpa_kernels_cudnn"))
PY
  fi
fi
if (( run_sanitize )); then
  t0=$SECONDS
  declare -A tool_flags=([memcheck]="--leak-check full" [racecheck]="" [initcheck]="" [synccheck]="")
  declare -A pids=()
  for tool in memcheck racecheck initcheck synccheck; do
    # shellcheck disable=SC2086
    timeout "${RA_SANITIZE_TIMEOUT_S:-400}" compute-sanitizer --tool $tool ${tool_flags[$tool]} \
      --error-exitcode 99 "$tests_bin" \
      "[sanitize]" "${catch_flags[@]}" >"$logs/sanitize_$tool.log" 2>&1 &
    pids[$tool]=$!
  done
  for tool in memcheck racecheck initcheck synccheck; do
    wait "${pids[$tool]}"; rc=$?
    log="$logs/sanitize_$tool.log"
    if (( rc == 0 )) && ! ran_tests "$log"; then rc=3; fi
    note "compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1), tests: $(grep -E '^(All tests passed|test cases:)' "$log" | tail -1)"
    if (( rc != 0 )); then
      status=1
      grep -v "^=========     " "$log" | head -40
    fi
  done
  note "compute-sanitizer (4 tools in parallel): $(( SECONDS - t0 )) s"
  # Informational: initcheck does not see the stores of cuBLASLt's GEMM kernels; this minimal
  # reproduction (a GEMM, then a plain kernel reading all of its verified output) shows it.
  compute-sanitizer --tool initcheck "$tests_bin" "[initcheck]" "${catch_flags[@]}" \
    >"$logs/initcheck_gemm_repro.log" 2>&1
  note "initcheck on a cuBLASLt GEMM's output (tool blind spot, not a failure): $(grep -E 'ERROR SUMMARY' "$logs/initcheck_gemm_repro.log" | tail -1 | cut -c1-60), $(grep -E '^(All tests passed|test cases:)' "$logs/initcheck_gemm_repro.log" | tail -1)"
fi
if (( run_mutations )); then
  t0=$SECONDS
  python3 scripts/mutation_check.py --build build-mutants --json "$logs/mutations.json" \
    >"$logs/mutations.log" 2>&1 || status=1
  note "mutation check: $(grep -c 'caught' "$logs/mutations.log") rows caught, $(( SECONDS - t0 )) s"
  cat "$logs/mutations.log"
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
if (( run_tests )); then
  for g in "${groups[@]}"; do cat "$logs/$g.precision.txt"; done
fi
(( run_bench )) && tail -70 "$logs/bench.log"
(( run_train )) && tail -20 "$logs/train_bench.log"
exit $status
