#!/usr/bin/env bash
# scripts/build_corpus.sh — builds the large corpus of the quality test on a fresh Debian 12
# machine (as root: it installs packages; about 1.3 GB of text to read, a few minutes), then,
# with --tokenize, its sub-word token files. Not run in CI: CI and quick runs use the small
# linux-doc corpus of scripts/prepare_data.sh.
#
#   bash scripts/build_corpus.sh [OUT (build/corpus)] [--tokenize DATA (build/data-bpe)]
#                                [--vocab 16384] [--limit-files N]
#
# 1. apt-get installs the sources: linux-source-6.1 (the kernel's source tarball, the code
#    corpus) and Debian documentation packages (the prose corpus, PROSE below), and python3.
# 2. scripts/build_corpus.py reads their text files, drops binary, oversized and empty ones,
#    deduplicates by content, splits train/validation BY FILE (a hash of the file's name), and
#    writes OUT/train.docs, OUT/val.docs, OUT/files.tsv.gz and OUT/manifest.json (package
#    versions, counts, sizes, SHA-256 of every output).
# 3. With --tokenize DATA: examples/prepare_data --corpus OUT --tokenizer sentencepiece trains a
#    BPE model of --vocab pieces on (a sample of) the training split only and writes
#    DATA/{train.bin, val.bin, tokenizer.model, manifest.tsv}, copying OUT/manifest.json to
#    DATA/corpus_manifest.json.
# --limit-files N takes at most N files per package: a quick trial of the whole pipeline.
# RA_BUILD_DIR (default build) is where prepare_data is built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=build/corpus tokenize="" vocab=16384 limit=0
while (($#)); do
  case $1 in
    --tokenize) tokenize=${2:?--tokenize needs a folder}; shift ;;
    --vocab) vocab=${2:?--vocab needs a number}; shift ;;
    --limit-files) limit=${2:?--limit-files needs a number}; shift ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    --*) echo "build_corpus.sh: unknown option $1" >&2; exit 1 ;;
    *) out=$1 ;;
  esac
  shift
done

CODE=linux-source-6.1
# Documentation of Debian 12 in plain-text sources (reStructuredText, POD, text, man pages)
# or HTML: the kernel's documentation, Python's and Perl's manuals, PostgreSQL's and Git's,
# Debian's own guides, and the man pages of the system and of its C interfaces.
PROSE=(linux-doc-6.1 python3.11-doc perl-doc postgresql-doc-15 git-doc debian-reference-en
       debian-handbook developers-reference debian-policy manpages manpages-dev)

# ---- 1. the packages ---------------------------------------------------------------------------
need=()
for p in python3 "$CODE" "${PROSE[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "build_corpus.sh: missing ${need[*]}, and not root with apt-get: install them first" >&2
    exit 1
  fi
  echo "build_corpus.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${need[@]}"
fi

# ---- 2. the corpus -----------------------------------------------------------------------------
python3 scripts/build_corpus.py "$out" --code "$CODE" --prose "${PROSE[@]}" --limit-files "$limit"

# ---- 3. the tokens -----------------------------------------------------------------------------
if [[ -n $tokenize ]]; then
  build_dir="${RA_BUILD_DIR:-build}"
  if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$build_dir" --target prepare_data -j "$(nproc)" >/dev/null
  mkdir -p "$tokenize"
  "${build_dir}/examples/prepare_data" --corpus "$out" --out "$tokenize" \
    --tokenizer sentencepiece --vocab "$vocab"
  cp "$out/manifest.json" "$tokenize/corpus_manifest.json"
  echo "corpus ${out} ($(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(", ".join(f"{k} {v['version']}" for k, v in m["packages"].items()))' "$out/manifest.json"))" \
    >"$tokenize/SOURCE"
  echo "build_corpus.sh: wrote ${tokenize}/{train.bin, val.bin, tokenizer.model, manifest.tsv, corpus_manifest.json, SOURCE}"
fi
