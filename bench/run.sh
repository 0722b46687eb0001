#!/usr/bin/env bash
# bench/run.sh — the whole GPU benchmark in one command: builds ra_bench, runs it, runs the
# PyTorch peers on the same GPU, compares. Prints the comparison table last; writes
# bench/results/<device>-<date>.json and one PNG per shape (and copies them, with the log,
# into "$OUT" when that is set). Budgeted to finish in under 6 minutes on an H100/H200,
# build included: torch.compile variants that would overrun are skipped and say so.
#
#   bash bench/run.sh            B=8 H=12 D=64 R=4 fp16, T = 1024, 2048, 4096
#   bash bench/run.sh --quick    T = 1024 only, fewer runs (a smoke test of the harness)
#
# Environment (all optional):
#   RA_COMMIT          commit recorded in the results (default: git rev-parse, else "unknown")
#   RA_BENCH_BUDGET_S  whole-run budget in seconds (default 330)
#   RA_BENCH_ARCH      CMAKE_CUDA_ARCHITECTURES (default 90a)
#   RA_BENCH_HEAD_DIMS / RA_BENCH_RANKS  kernels compiled (default 64 and "0;4": the shapes
#                      measured; pass --D/--R in RA_BENCH_ARGS together with matching lists)
#   RA_BENCH_ARGS      extra flags for both ra_bench and torch_peers.py (e.g. "--T 1024,2048")
#   PYTHON             interpreter with PyTorch (default python3)
#   RA_BENCH_BUILD     an already configured build folder to reuse (e.g. build-gpu of
#                      scripts/gpu_check.sh, whose kernels cover the measured shapes)
set -euo pipefail
export PYTHONUNBUFFERED=1

start=$SECONDS
budget=${RA_BENCH_BUDGET_S:-330}
arch=${RA_BENCH_ARCH:-90a}
python=${PYTHON:-python3}
quick=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) echo "run.sh: unknown argument '$arg' (expected --quick)" >&2; exit 2 ;;
  esac
done
read -r -a extra <<<"${RA_BENCH_ARGS:-}"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build="${RA_BENCH_BUILD:-build-bench}"
results=bench/results
mkdir -p "$results" "$build"
log=$results/run.log  # ignored by git; copied to $OUT
ra_json=$build/ra.json
torch_json=$build/torch.json

if [[ -z "${RA_COMMIT:-}" ]]; then
  RA_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [[ $RA_COMMIT != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
    RA_COMMIT+="-dirty"
  fi
fi
export RA_COMMIT

elapsed() { echo $((SECONDS - start)); }
step() { echo "== [$(elapsed) s] $*"; }

# The top-level project finds Eigen for ra::cpu; the benchmark never includes it, and a GPU
# image may not ship it. This writes an empty Eigen3 package for a benchmark-only configure.
write_eigen_stub() {
  mkdir -p "$1"
  cat >"$1/Eigen3Config.cmake" <<'CMAKE'
# Written by bench/run.sh: an empty Eigen3 so a benchmark-only build configures without it.
if(NOT TARGET Eigen3::Eigen)
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
endif()
CMAKE
  cat >"$1/Eigen3ConfigVersion.cmake" <<'CMAKE'
set(PACKAGE_VERSION 3.4.0)
set(PACKAGE_VERSION_COMPATIBLE TRUE)
CMAKE
}

# Everything the run prints goes through tee into $log. A failed step does not stop the
# steps after it (PyTorch's figures are worth having without ra's, and the other way round);
# run returns non-zero when any step failed.
run() {
  local failed=()
  step "ra bench: commit $RA_COMMIT, budget ${budget} s, CUDA arch $arch"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv,noheader 2>/dev/null || echo "(nvidia-smi not available)"
  rm -f "$ra_json" "$torch_json"

  # ---- build only the kernels measured (D = 64, R in {0, 4}) ---------------------------------
  local configure=(cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DRA_BUILD_TESTS=OFF -DRA_BUILD_EXAMPLES=OFF
    -DRA_BUILD_BENCH=ON -DRA_CUDA_HEAD_DIMS="${RA_BENCH_HEAD_DIMS:-64}"
    -DRA_CUDA_RANKS="${RA_BENCH_RANKS:-0;4}")
  if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
    configure+=(-G Ninja)
  fi
  step "configure"
  if [[ -n "${RA_BENCH_BUILD:-}" && -f $build/CMakeCache.txt ]]; then
    echo "reusing the configured build folder $build"
  elif ! "${configure[@]}" >"$build/configure.log" 2>&1; then
    if grep -q "Eigen3" "$build/configure.log"; then
      echo "configure: no Eigen3 here; ra_bench does not use it: retrying with an empty one"
      write_eigen_stub "$root/$build/eigen3-stub"
      configure+=(-DEigen3_DIR="$root/$build/eigen3-stub")
      "${configure[@]}" >"$build/configure.log" 2>&1 || failed+=(configure)
    else
      failed+=(configure)
    fi
    if [[ ${#failed[@]} -gt 0 ]]; then
      cat "$build/configure.log"
    fi
  fi
  if [[ ${#failed[@]} -eq 0 ]]; then
    step "build ra_bench ($(nproc) jobs)"
    if ! cmake --build "$build" --target ra_bench -j"$(nproc)" >"$build/build.log" 2>&1; then
      tail -n 60 "$build/build.log"
      failed+=(build)
    fi
  fi

  # ---- run ----------------------------------------------------------------------------------
  if [[ ${#failed[@]} -eq 0 ]]; then
    local exe
    exe=$(find "$build" -name ra_bench -type f -perm -u+x | head -n 1)
    step "run $exe"
    "$exe" "${quick[@]}" "${extra[@]}" --json "$ra_json" || failed+=(ra_bench)
  fi
  # The PyTorch peers get what is left of the budget, less 15 s for the comparison.
  local left=$((budget - $(elapsed) - 15))
  step "run torch_peers.py (${left} s left)"
  "$python" bench/torch_peers.py "${quick[@]}" "${extra[@]}" \
    --deadline "$(($(date +%s) + left))" --json "$torch_json" || failed+=(torch_peers)

  # ---- compare: prints the table last ---------------------------------------------------------
  step "compare"
  local copy=()
  if [[ -n "${OUT:-}" ]]; then
    copy=(--copy-to "$OUT")
  fi
  "$python" bench/compare.py --ra "$ra_json" --torch "$torch_json" --out-dir "$results" \
    "${copy[@]}" || failed+=(compare)
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: FAILED steps: ${failed[*]} (after $(elapsed) s; log: $log)"
    return 1
  fi
}

rc=0
run 2>&1 | tee "$log" || rc=$?
if [[ -n "${OUT:-}" ]]; then
  cp "$log" "$OUT/run.log" 2>/dev/null || true
fi
exit "$rc"
