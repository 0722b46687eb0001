#!/usr/bin/env bash
# scripts/check_cuda_skip.sh — checks the skip rule of the GPU test runner (tests/cuda/main.cu)
# on a machine WITHOUT a GPU: exit 77 ("skipped") only when there is truly no device; any other
# CUDA error fails.
#
#   bash scripts/check_cuda_skip.sh [path/to/ra_cuda_tests]     (default: build/tests/...)
#
# It puts a stand-in libcuda.so.1 (built here with cc) first on LD_LIBRARY_PATH, so the CUDA
# runtime finds "a driver" that reports a chosen version and a chosen cuInit result:
#   no driver at all (the real machine)           -> 77, "no CUDA device"
#   a driver older than the runtime               -> 1, cudaErrorInsufficientDriver named
#   a driver whose initialisation fails           -> 1, cudaErrorInitializationError named
#   a driver that finds no device (cuInit = 100)  -> 77, "no CUDA device"
# The stand-in answers cuGetProcAddress, which the CUDA 12.x/13 runtimes use to find the
# driver's entry points. Exits non-zero when any case behaves otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-build/tests/ra_cuda_tests}
[[ -x $bin ]] || { echo "check_cuda_skip.sh: no executable $bin (build ra_cuda_tests first)" >&2; exit 2; }
if ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
  echo "check_cuda_skip.sh: this machine has a GPU (/dev/nvidiaN); run it where there is none" >&2
  exit 2
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/fake.c" <<'EOF'
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
static int env(const char* n, int d) { const char* v = getenv(n); return v ? atoi(v) : d; }
CUresult cuDriverGetVersion(int* v) { *v = env("FAKE_CUDA_VERSION", 11000); return 0; }
CUresult cuInit(unsigned flags) { (void)flags; return env("FAKE_CUDA_INIT", 3); }
CUresult cuDeviceGetCount(int* n) { *n = 0; return env("FAKE_CUDA_INIT", 3); }
CUresult cuGetProcAddress_v2(const char* s, void** p, int v, unsigned long long f, int* st) {
  (void)v, (void)f;
  void* fn = 0;
  if (!strcmp(s, "cuDriverGetVersion")) fn = (void*)cuDriverGetVersion;
  if (!strcmp(s, "cuInit")) fn = (void*)cuInit;
  if (!strcmp(s, "cuDeviceGetCount")) fn = (void*)cuDeviceGetCount;
  if (!strcmp(s, "cuGetProcAddress")) fn = (void*)cuGetProcAddress_v2;
  *p = fn;
  if (st) *st = fn ? 0 : 1;
  return fn ? 0 : 500; /* CUDA_ERROR_NOT_FOUND */
}
CUresult cuGetProcAddress(const char* s, void** p, int v, unsigned long long f) {
  return cuGetProcAddress_v2(s, p, v, f, 0);
}
EOF
cc -shared -fPIC -o "$dir/libcuda.so.1" "$dir/fake.c" || exit 2

status=0
# case <name> <expected exit> <expected text> [environment...]
check() {
  local name=$1 want_rc=$2 want_text=$3
  shift 3
  local out rc
  out=$(env "$@" "$bin" 2>&1)
  rc=$?
  if [[ $rc == "$want_rc" && $out == *"$want_text"* ]]; then
    echo "ok   $name: exit $rc: $out"
  else
    echo "FAIL $name: exit $rc (expected $want_rc with '$want_text'): $out"
    status=1
  fi
}
check "no driver installed" 77 "no CUDA device"
check "driver older than the runtime" 1 "cudaErrorInsufficientDriver" \
  LD_LIBRARY_PATH="$dir" FAKE_CUDA_VERSION=11000
check "driver initialisation fails" 1 "cudaErrorInitializationError" \
  LD_LIBRARY_PATH="$dir" FAKE_CUDA_VERSION=99000 FAKE_CUDA_INIT=3
check "driver finds no device" 77 "no CUDA device" \
  LD_LIBRARY_PATH="$dir" FAKE_CUDA_VERSION=99000 FAKE_CUDA_INIT=100
exit $status
