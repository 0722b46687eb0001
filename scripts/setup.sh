#!/usr/bin/env bash
# scripts/setup.sh — one command for a fresh machine: installs what ra needs (when missing),
# then configures, builds and runs the main job, the GPT-2 attention block example
# (examples/gpt2_attention_block.cpp: baseline and RA blocks, forward and backward, on the CPU).
#
#   bash scripts/setup.sh               install if needed, build into build/, run the example
#   bash scripts/setup.sh --deps-only   only the install step (scripts/test.sh calls this)
#
# Needs: cmake >= 3.25, g++ >= 12 (C++20), make, Eigen 3.4, Catch2 2.13, python3, and SentencePiece
# (libsentencepiece-dev: sub-word tokens; the build works without it on byte tokens alone, but
# scripts/test.sh then fails, as its tests are skipped). On Debian/Ubuntu as root the missing
# ones are installed with apt-get; otherwise the script says what is missing.
# CUDA is optional: where nvcc exists the CUDA targets are configured too (see scripts/test.sh).
# For the PyTorch binding: python3 with pip; torch==2.11.0, scikit-build-core, pytest and numpy
# are installed with pip when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deps_only=0
if [[ "${1:-}" == "--deps-only" ]]; then
  deps_only=1
  shift
fi

# ---- dependencies ---------------------------------------------------------------------------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
[[ -f /usr/include/eigen3/Eigen/Core ]] || missing+=(libeigen3-dev)
[[ -f /usr/include/catch2/catch.hpp ]] || missing+=(catch2)
[[ -f /usr/include/sentencepiece_trainer.h ]] || missing+=(libsentencepiece-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)  # scripts/build_corpus.py and its test

if ((${#missing[@]} == 0)); then
  echo "setup.sh: cmake, g++, make, Eigen, Catch2, python3 and SentencePiece are installed; not running apt-get"
elif [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: installing ${missing[*]} with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: missing ${missing[*]}, and not root (or no apt-get): not installing." >&2
  echo "setup.sh: install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
# The PyTorch binding (python/): a pinned torch, installed from PyPI once per machine (the wheel
# and its CUDA libraries are large) and only when that version is not importable, and the
# build and test tools of the binding when missing. RA_PYTHON picks the interpreter.
python="${RA_PYTHON:-python3}"
torch_version=2.11.0
if ! "$python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" \
    2>/dev/null; then
  echo "setup.sh: installing torch==$torch_version from PyPI (large; once per machine)"
  "$python" -m pip install --no-input "torch==$torch_version"
fi
py_missing=()
"$python" -c "import scikit_build_core" 2>/dev/null || py_missing+=("scikit-build-core>=0.10")
"$python" -c "import pytest" 2>/dev/null || py_missing+=(pytest)
"$python" -c "import numpy" 2>/dev/null || py_missing+=(numpy)
if ((${#py_missing[@]})); then
  echo "setup.sh: installing ${py_missing[*]} with pip"
  "$python" -m pip install --no-input "${py_missing[@]}"
fi
if ((deps_only)); then exit 0; fi

# ---- configure, build and run the main job -----------------------------------------------------
build_dir="${RA_BUILD_DIR:-build}"
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
echo "setup.sh: configuring ${build_dir}/ (Release)"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@"
echo "setup.sh: building the GPT-2 attention block example"
cmake --build "$build_dir" --target gpt2_attention_block -j "$(nproc)"
echo "setup.sh: running ${build_dir}/examples/gpt2_attention_block"
"${build_dir}/examples/gpt2_attention_block"
