#!/usr/bin/env bash
# scripts/test.sh — configures, builds and runs every test; exits non-zero if anything fails.
#
#   bash scripts/test.sh [extra cmake arguments]
#
# Steps: dependencies (scripts/setup.sh --deps-only), configure build/ (Release), build with
# all cores (library headers, tests, examples, and the CUDA targets where nvcc exists), then
# ctest --output-on-failure: the CPU tests (the full (D, R) matrix), the header
# self-containment check (part of the build), the installed-package consumer check and the GPU
# tests (reported as skipped on a machine without a GPU, never as passed).
#
# Where nvcc exists but no GPU does (CI), only the CUDA kernel instantiations are narrowed, to
# D = 64 and R in {0, 4}, to keep the build short; the CPU lists are never narrowed. Override:
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
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
# CTest shows no output for skipped tests: say why the GPU tests were skipped, if they were.
if grep -q "^no CUDA device" "$build_dir/Testing/Temporary/LastTest.log" 2>/dev/null; then
  echo "test.sh: GPU tests skipped: $(grep -m1 "^no CUDA device" "$build_dir/Testing/Temporary/LastTest.log")"
fi
echo "test.sh: all tests passed (configure + build $((built - start)) s, tests $((SECONDS - built)) s)"
