#!/usr/bin/env bash
# scripts/prepare_data.sh — makes the training data: OUT/train.bin and OUT/val.bin (byte
# tokens, split by file; format in include/ra/nn/data.hpp) plus OUT/manifest.tsv.
#
#   bash scripts/prepare_data.sh [OUT (default build/data)]
#
# Source: the reStructuredText sources of the Linux kernel documentation in Debian's
# linux-doc-6.1 (about 3,200 files, 24 MB of text). When the package is missing and we are
# root with apt-get, it is installed; its .rst.gz files are decompressed into OUT/linux-doc/
# and tokenized by examples/prepare_data. When it cannot be had (not root, no apt-get, no
# such package), the script falls back to the embedded sample data/sample (254 KB) and says
# so. RA_DATA_SOURCE=sample forces the sample; RA_LINUX_DOC_PACKAGE names another package;
# RA_BUILD_DIR (default build) is where prepare_data is built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-build/data}"
build_dir="${RA_BUILD_DIR:-build}"
package="${RA_LINUX_DOC_PACKAGE:-linux-doc-6.1}"
doc_dir="/usr/share/doc/${package}/Documentation"

# ---- the prepare_data program ----------------------------------------------------------------
if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
  echo "prepare_data.sh: configuring ${build_dir}/ (Release)"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build_dir" --target prepare_data -j "$(nproc)" >/dev/null
prepare="${build_dir}/examples/prepare_data"

# ---- the corpus --------------------------------------------------------------------------------
source_kind="${RA_DATA_SOURCE:-linux-doc}"
if [[ "$source_kind" == "linux-doc" && ! -d "$doc_dir" ]]; then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "prepare_data.sh: installing ${package} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$package" >/dev/null 2>&1; then
      apt-get update >/dev/null 2>&1 || true
      apt-get install -y --no-install-recommends "$package" >/dev/null 2>&1 ||
        echo "prepare_data.sh: apt-get could not install ${package}" >&2
    fi
  else
    echo "prepare_data.sh: ${package} is not installed and this is not root with apt-get" >&2
  fi
fi
if [[ "$source_kind" == "linux-doc" && ! -d "$doc_dir" ]]; then
  echo "prepare_data.sh: FALLING BACK to the embedded sample data/sample (254 KB, 10 files):" >&2
  echo "prepare_data.sh: enough to run the programs, far too little for a meaningful comparison." >&2
  source_kind=sample
fi

mkdir -p "$out"
if [[ "$source_kind" == "sample" ]]; then
  "$prepare" --input data/sample --out "$out" --ext .rst
  echo "data/sample (see data/sample/README.md)" >"$out/SOURCE"
else
  # The package ships the sources gzip-compressed: decompress them, keeping the tree.
  src="${out}/linux-doc"
  rm -rf "$src"
  mkdir -p "$src"
  echo "prepare_data.sh: decompressing ${doc_dir}/**/*.rst.gz into ${src}/"
  (cd "$doc_dir" && find . -name '*.rst.gz' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "${src}/$(dirname "$f")"
      gzip -dc -- "${doc_dir}/${f}" >"${src}/${f%.gz}"
    done
  (cd "$doc_dir" && find . -name '*.rst' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "${src}/$(dirname "$f")"
      cp -- "${doc_dir}/${f}" "${src}/${f}"
    done
  "$prepare" --input "$src" --out "$out" --ext .rst
  version="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || echo unknown)"
  echo "${package} ${version}, ${doc_dir} (.rst)" >"$out/SOURCE"
  rm -rf "$src"
fi
echo "prepare_data.sh: wrote ${out}/train.bin and ${out}/val.bin from $(cat "$out/SOURCE")"
