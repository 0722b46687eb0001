#!/usr/bin/env bash
# tests/programs/build_corpus.sh — scripts/build_corpus.py on a small made-up code tarball and
# one installed documentation set (catch2's Markdown, installed by scripts/setup.sh), never on
# the large corpus (that is not built in CI):
#
#   build_corpus.sh BIN DATA WORK CASE
#
#   corpus   every kind of file is kept or dropped for its reason (duplicate up to trailing
#            spaces, binary, not UTF-8, empty, too large), CRLF becomes LF, no document is in
#            both splits, the manifest records the packages (version, installed size, the
#            tarball's SHA-256) and every output's SHA-256, and prepare_data --corpus reads it
#   errors   a bad --val-percent, --max-file-bytes, --limit-files, a missing tarball and a
#            package that is not installed are refused by name
source "$(dirname "$0")/common.sh"
case_=$4
SCRIPT="$(dirname "$0")/../../scripts/build_corpus.py"
py() { python3 "$SCRIPT" "$@"; }
refused() {  # PATTERN COMMAND...: fails with status 1 and PATTERN on stderr
  local pattern=$1 rc=0
  shift
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  ((rc == 1)) || fail "exit status $rc, expected 1: $*"
  grep -qE -- "$pattern" "$WORK/err" || fail "'$pattern' not in: $(cat "$WORK/err")"
}

# A tarball of the shape of linux-source-6.1: one top folder.
src="$WORK/src/linux-x"
mkdir -p "$src/drivers" "$src/doc"
for i in $(seq 1 30); do printf 'int f%d(void) { return %d; }\n' "$i" "$i" >"$src/drivers/f$i.c"; done
printf 'int same(void);\nint other(void);\n' >"$src/drivers/a_first.c"
printf 'int same(void);   \nint other(void);\t\n' >"$src/drivers/z_dup.c"  # trailing spaces
printf 'ELF\0\1\2' >"$src/drivers/blob.o"
printf 'caf\xe9\n' >"$src/doc/latin1.txt"
printf '  \n\n' >"$src/doc/blank.txt"
head -c 3000 /dev/zero | tr '\0' 'x' >"$src/doc/huge.txt"
printf 'line one\r\nline two\r\n' >"$src/doc/crlf.txt"
ln -s f1.c "$src/drivers/link.c"
tar -C "$WORK/src" -cJf "$WORK/code.tar.xz" linux-x
ARGS=(--code dpkg --code-tarball "$WORK/code.tar.xz" --prose catch2 --max-file-bytes 2000
      --val-percent 30)

case "$case_" in
  corpus)
    py "$WORK/c" "${ARGS[@]}" >"$WORK/log"
    rows=$(gzip -dc "$WORK/c/files.tsv.gz")
    reason() { awk -F'\t' -v n="$1" '$4 == n { print $1 }' <<<"$rows"; }
    [[ $(reason dpkg/drivers/z_dup.c) == duplicate ]] || fail "z_dup.c: $(reason dpkg/drivers/z_dup.c)"
    [[ $(reason dpkg/drivers/a_first.c) == train || $(reason dpkg/drivers/a_first.c) == val ]] ||
      fail "the first of two duplicates was not kept"
    [[ $(reason dpkg/drivers/blob.o) == binary ]] || fail "blob.o: $(reason dpkg/drivers/blob.o)"
    [[ $(reason dpkg/doc/latin1.txt) == binary ]] || fail "latin1.txt: $(reason dpkg/doc/latin1.txt)"
    [[ $(reason dpkg/doc/blank.txt) == empty ]] || fail "blank.txt: $(reason dpkg/doc/blank.txt)"
    [[ $(reason dpkg/doc/huge.txt) == too_large ]] || fail "huge.txt: $(reason dpkg/doc/huge.txt)"
    [[ -z $(reason dpkg/drivers/link.c) ]] || fail "a symbolic link became a document"
    cat "$WORK/c/train.docs" "$WORK/c/val.docs" | tr '\0' '\n' | grep -A1 -x 'line one' |
      grep -qx 'line two' || fail "crlf.txt is not in the corpus with LF line ends"
    ! grep -q $'\r' "$WORK/c/train.docs" "$WORK/c/val.docs" || fail "a CR survived"
    # Documents: one per kept row, each split's NUL count equal to its rows, none in both.
    kept_train=$(awk -F'\t' '$1 == "train"' <<<"$rows" | wc -l)
    kept_val=$(awk -F'\t' '$1 == "val"' <<<"$rows" | wc -l)
    ((kept_train > 0 && kept_val > 0)) || fail "a split is empty: $kept_train train, $kept_val val"
    [[ $(tr -cd '\0' <"$WORK/c/train.docs" | wc -c) == "$kept_train" ]] || fail "train.docs count"
    [[ $(tr -cd '\0' <"$WORK/c/val.docs" | wc -c) == "$kept_val" ]] || fail "val.docs count"
    both=$(awk -F'\t' '$1 == "train" || $1 == "val" { print $3 }' <<<"$rows" | sort | uniq -d)
    [[ -z $both ]] || fail "content in both splits (or kept twice): $both"
    grep -q "^catch2/" <(cut -f4 <<<"$rows") || fail "no document of catch2"
    python3 - "$WORK/c" "$WORK/code.tar.xz" <<'EOF' || fail "manifest.json"
import hashlib, json, os, sys
out, tarball = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(out, "manifest.json")))
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
for pkg in ("dpkg", "catch2"):
    info = m["packages"][pkg]
    assert info["version"] and info["installed_size_kib"] > 0, info
tb = m["packages"]["dpkg"]["tarball"]
assert tb["sha256"] == sha(tarball) and tb["bytes"] == os.path.getsize(tarball), tb
for name, o in m["outputs"].items():
    p = os.path.join(out, name)
    assert o["sha256"] == sha(p) and o["bytes"] == os.path.getsize(p), name
assert m["dropped"]["dpkg"] == {"duplicate": 1, "binary": 2, "empty": 1, "too_large": 1}, m["dropped"]
assert m["total"]["train"]["documents"] + m["total"]["val"]["documents"] >= 31
EOF
    # The same inputs give the same bytes (names sorted, gzip without a time stamp).
    py "$WORK/c2" "${ARGS[@]}" >/dev/null
    for f in train.docs val.docs files.tsv.gz; do
      cmp -s "$WORK/c/$f" "$WORK/c2/$f" || fail "$f differs between two builds"
    done
    "$BIN/prepare_data" --corpus "$WORK/c" --out "$WORK/tokens" >"$WORK/prep.log"
    grep -q "documents from $WORK/c ($kept_train train, $kept_val val" "$WORK/prep.log" ||
      fail "prepare_data --corpus: $(cat "$WORK/prep.log")" ;;
  errors)
    refused "--val-percent 60.0, expected a value in \(0, 50\)" py "$WORK/c" "${ARGS[@]}" --val-percent 60
    refused "--max-file-bytes 0, expected a positive size" py "$WORK/c" "${ARGS[@]}" --max-file-bytes 0
    refused "--limit-files -1, expected a count >= 0" py "$WORK/c" "${ARGS[@]}" --limit-files -1
    refused "--code-tarball '$WORK/none.tar.xz' is not a file" py "$WORK/c" --code dpkg \
      --code-tarball "$WORK/none.tar.xz"
    refused "package 'no-such-package-ra' is not installed" py "$WORK/c" --code "" \
      --prose no-such-package-ra
    printf 'no NUL at the end' >"$WORK/bad.docs"
    mkdir -p "$WORK/bad" && cp "$WORK/bad.docs" "$WORK/bad/train.docs" && cp "$WORK/bad.docs" "$WORK/bad/val.docs"
    "$(dirname "$0")/expect_failure.sh" "train.docs' does not end with a NUL byte" \
      "$BIN/prepare_data" --corpus "$WORK/bad" --out "$WORK/t" ;;
  *) fail "unknown case '$case_'" ;;
esac
echo "build_corpus $case_: ok"
