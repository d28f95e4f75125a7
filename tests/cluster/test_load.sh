#!/usr/bin/env bash
# test_load.sh - the short version of the load run (README "Hardening"):
# baton-bench load with 16 concurrent streams for 20 s (12 s under the
# sanitizers) on a 3-worker loopback cluster of the tiny model, 10% of the
# requests cancelled after a chunk or three, 10% with deadlines of 20-200 ms.
# Passes when every request ended with the status it should (OK; CANCELLED or
# DEADLINE_EXCEEDED for those), every daemon is alive, the RSS and descriptors of
# each daemon at the end are within 10% of their value after the warm-up, and
# requests of every kind were seen. Under the sanitizers only the descriptors are
# compared: ASan's quarantine holds freed memory (up to 256 MiB), so RSS grows
# with the allocations made, not with what is kept.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin load
secs=20
[ "${BATON_SANITIZE:-}" = ON ] && secs=12
out=$(T timeout 200 "$BIN/tools/baton-bench" load --streams 16 --seconds "$secs" --warmup 4 --workers 3 --json 2>"$WORK/load.err")
rc=$?
echo "$out"
if [ "${BATON_SANITIZE:-}" != ON ]; then
    [ $rc = 0 ] && ok "baton-bench load passed" || { bad "baton-bench load: exit $rc"; tail -30 "$WORK/load.err"; }
fi
check() { # PYTHON-EXPR WHAT
    if echo "$out" | jget "$1" 2>/dev/null | grep -qx True; then ok "$2"; else bad "$2"; fi
}
check 'd["unexpected"] == 0 and d["requests"] > 50' "more than 50 requests, none ended unexpectedly"
check 'all(k in d["by_status"] for k in ("OK", "CANCELLED", "DEADLINE_EXCEEDED"))' "OK, CANCELLED and DEADLINE_EXCEEDED seen"
check 'd["tok_s"] > 0 and d["ttft_ms"]["p99"] > 0' "tokens/s and latencies measured"
if [ "${BATON_SANITIZE:-}" = ON ]; then
    check 'len(d["daemons"]) == 4 and d["alive"] and all(x["fds_end"] <= x["fds_warm"] * 1.1 for x in d["daemons"])' \
        "4 daemons alive, descriptors flat"
else
    check 'len(d["daemons"]) == 4 and d["alive"] and d["flat"]' "4 daemons alive, RSS and fds flat"
fi
exit $fail
