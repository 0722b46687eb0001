#!/usr/bin/env bash
# scripts/test.sh — configures, builds and runs every test; exits non-zero if anything fails.
#
#   bash scripts/test.sh [extra cmake arguments]
#
# Steps: dependencies (scripts/setup.sh --deps-only), configure build/ (Release), build with
# all cores (library headers, tests, examples, and the CUDA targets where nvcc exists), then
# ctest --output-on-failure: the CPU tests (the full (D, R) matrix), the header
# self-containment check (part of the build), the installed-package consumer check and the GPU
# tests (reported as skipped on a machine without a GPU, never as passed). The last line says
# what ran: "all tests passed" only when nothing skipped; "GPU tests skipped: no GPU" when the
# GPU tests skipped; and the script fails when `nvidia-smi -L` sees a GPU but they skipped.
# After ctest it builds the PyTorch binding (python/) with pip and runs its pytest suite (its
# CUDA tests are reported as skipped without a GPU); a failure there fails the script.
#
# Where nvcc exists but no GPU does (CI), only the CUDA kernel instantiations are narrowed, to
# D = 64 and R in {0, 4}, to keep the build short; the CPU lists are never narrowed, and every
# other (D, R) kernel pair still compiles once (ra_flash_compile_check). Override:
#   RA_CUDA_HEAD_DIMS="64;128" RA_CUDA_RANKS="" bash scripts/test.sh   (empty = every value)
#   RA_CUDA_ARCHITECTURES=90a bash scripts/test.sh                     (default: 80)
#   RA_BUILD_DIR=build-x bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS

bash scripts/setup.sh --deps-only

build_dir="${RA_BUILD_DIR:-build}"
jobs="$(nproc)"
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if command -v nvcc >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    default_dims="" default_ranks=""  # a GPU to test on: every kernel
  else
    default_dims="64" default_ranks="0;4"
  fi
  cmake_args+=("-DRA_CUDA_HEAD_DIMS=${RA_CUDA_HEAD_DIMS-$default_dims}"
               "-DRA_CUDA_RANKS=${RA_CUDA_RANKS-$default_ranks}")
  if [[ -n "${RA_CUDA_ARCHITECTURES:-}" ]]; then
    cmake_args+=("-DCMAKE_CUDA_ARCHITECTURES=${RA_CUDA_ARCHITECTURES}")
  fi
  echo "test.sh: nvcc found: CUDA targets on (CUDA head dims '${RA_CUDA_HEAD_DIMS-$default_dims}'," \
       "ranks '${RA_CUDA_RANKS-$default_ranks}'; empty = all)"
else
  echo "test.sh: no nvcc: CPU-only build"
fi

cmake -S . -B "$build_dir" "${cmake_args[@]}" "$@"
cmake --build "$build_dir" -j "$jobs"
built=$SECONDS
ctest_log="$build_dir/Testing/ctest-output.log"
mkdir -p "$build_dir/Testing"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" 2>&1 | tee "$ctest_log"
tested=$SECONDS

# The PyTorch binding (python/): built into the interpreter's environment against the installed
# torch (CUDA kernels where nvcc exists, with the same narrowed lists), then its pytest suite.
# Its CUDA tests skip without a GPU (pytest reports them as skipped). RA_PYTHON: interpreter.
python="${RA_PYTHON:-python3}"
py_args=(--no-build-isolation --no-deps --no-input
         "--config-settings=build-dir=$(realpath -m "$build_dir")/python"
         "--config-settings=cmake.define.RA_CUDA_HEAD_DIMS=${RA_CUDA_HEAD_DIMS-${default_dims:-}}"
         "--config-settings=cmake.define.RA_CUDA_RANKS=${RA_CUDA_RANKS-${default_ranks:-}}")
if [[ -n "${RA_CUDA_ARCHITECTURES:-}" ]]; then
  py_args+=("--config-settings=cmake.define.CMAKE_CUDA_ARCHITECTURES=${RA_CUDA_ARCHITECTURES}")
fi
echo "test.sh: building the PyTorch binding (python/)"
CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$python" -m pip install "${py_args[@]}" ./python
"$python" -m pytest python/tests -q -rs -p no:cacheprovider
times="configure + build $((built - start)) s, tests $((tested - built)) s, PyTorch binding $((SECONDS - tested)) s"

# CTest passes a run with skipped tests and shows no output for them: say which skipped and
# why, never claim that everything passed when something did not run, and fail when a GPU is
# there but the GPU tests skipped anyway.
mapfile -t skipped < <(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' "$ctest_log")
if (( ${#skipped[@]} )); then
  reason=$(grep -h -m1 "no CUDA device" "$build_dir/Testing/Temporary/LastTest.log" 2>/dev/null \
           || echo "no reason printed")
  echo "test.sh: skipped: ${skipped[*]} ($reason)"
  if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "test.sh: FAILED: nvidia-smi sees a GPU ($(nvidia-smi -L | head -1)) but the GPU tests" \
         "skipped" >&2
    exit 1
  fi
  # The GPU tests are those CTest labels `gpu` (tests/CMakeLists.txt); no other test may skip.
  # (-FA: not the fixture setups that a GPU test requires.)
  gpu_tests=" $(ctest --test-dir "$build_dir" -N -L '^gpu$' -FA '.*' 2>/dev/null \
                | sed -n 's/^[[:space:]]*Test[[:space:]]*#[0-9]*:[[:space:]]*//p' | tr '\n' ' ')"
  for t in "${skipped[@]}"; do
    if [[ $gpu_tests != *" $t "* ]]; then
      echo "test.sh: FAILED: $t skipped; only the GPU tests (label gpu:$gpu_tests) may skip," \
           "and only without a GPU" >&2
      exit 1
    fi
  done
  echo "test.sh: every test that ran passed; GPU tests skipped: no GPU ($times)"
elif ! grep -q " ra_cuda_tests " "$ctest_log"; then
  echo "test.sh: every test that ran passed; GPU tests not built (no nvcc, or CUDA off) ($times)"
else
  echo "test.sh: all tests passed ($times)"
fi
