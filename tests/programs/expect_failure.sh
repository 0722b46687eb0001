#!/usr/bin/env bash
# tests/programs/expect_failure.sh — runs a command that must fail cleanly:
#
#   expect_failure.sh PATTERN COMMAND [ARGS...]
#
# Passes when COMMAND exits with a status in 1..125 (an error it reported, not a crash or a
# signal), its stderr matches the extended regular expression PATTERN, and its stdout holds
# no "wrote ..." line (nothing may claim to have been written).
set -uo pipefail
pattern=$1
shift
command="$*"
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
rc=$?
fail() {
  echo "FAIL: $*"
  echo "--- command: $command"
  echo "--- stdout (tail):"; tail -5 "$out"
  echo "--- stderr:"; cat "$err"
  exit 1
}
((rc >= 1 && rc <= 125)) || fail "exit status $rc, expected a reported error (1..125)"
grep -Eq -- "$pattern" "$err" || fail "stderr does not match '$pattern'"
! grep -q '^wrote ' "$out" || fail "stdout says 'wrote ...' although the program failed"
echo "ok: exit status $rc; $(head -c 400 "$err")"
