#!/usr/bin/env bash
# test_cli_help.sh - every binary answers --help with its usage on stdout and
# exit code 0, and refuses an unknown option with a message on stderr and a
# non-zero exit code (never a crash: codes above 128 are signals); every
# benchmark of baton-bench answers `baton-bench NAME --help` without running.
set -u
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
fail=0
bad() {
    echo "  FAIL $*"
    fail=1
}
for b in tools/baton tools/batonctl tools/baton-run tools/baton-bench tools/baton-mkmodel tools/baton-mpi \
    coordinator/baton-coord worker/baton-worker; do
    out=$(timeout 20 "$BIN/$b" --help 2>/dev/null)
    rc=$?
    [ $rc = 0 ] || bad "$b --help exited $rc"
    echo "$out" | grep -q "usage" || bad "$b --help printed no usage"
    err=$(timeout 20 "$BIN/$b" --no-such-option 2>&1 >/dev/null)
    rc=$?
    { [ $rc != 0 ] && [ $rc -lt 128 ]; } || bad "$b --no-such-option exited $rc"
    [ -n "$err" ] || bad "$b --no-such-option said nothing on stderr"
done
# the benchmarks listed by `baton-bench --help` (lines "  NAME  text")
names=$("$BIN/tools/baton-bench" --help | awk '/^benchmarks:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ "$(echo "$names" | wc -w)" -ge 7 ] || bad "baton-bench lists fewer than 7 benchmarks: $names"
for n in $names; do
    out=$(timeout 5 "$BIN/tools/baton-bench" "$n" --help)
    rc=$?
    [ $rc = 0 ] || bad "baton-bench $n --help exited $rc"
    echo "$out" | head -1 | grep -q "^usage: baton-bench $n" || bad "baton-bench $n --help: no usage line: $out"
done
[ $fail = 0 ] && echo "PASS: --help and unknown options of 8 binaries, --help of $(echo "$names" | wc -w) benchmarks"
exit $fail
