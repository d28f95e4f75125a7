#!/usr/bin/env bash
# test_cluster_restart.sh - workers outlive their coordinator and come back:
#  1. a worker stopped (SIGSTOP) past --heartbeat-timeout is declared dead and the
#     pool re-plans without it; after SIGCONT it rejoins by itself as a new node,
#     and a rebalance gives it layers again;
#  2. the coordinator is restarted on the same address: the workers notice, free
#     their slices, rejoin with back-off and serve again with the same tokens;
#  3. `batonctl shutdown` stops the coordinator and every worker exits (0);
#  and a coordinator whose loop could not run for 3 s (SIGSTOP: what a long
#  stall looks like) does not count that time as the workers' silence.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
. "$SRC/tests/cluster-streams.sh"
test_begin restart 20

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens 24 --json | json_tokens)
gen() { TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 24 --ignore-eos --json | json_tokens; }
status() { CTL status --json | jget "$1"; }
# wait_until SECONDS CMD...: wait_for (lib.sh), printing the milliseconds it took
wait_until() {
    local t0
    t0=$(date +%s%N)
    wait_for "$@" || return 1
    echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
workers_are() { [ "$(status 'd["workers"]' 2>/dev/null)" = "$1" ]; }
serving() { [ "$(status 'd["serving"]' 2>/dev/null)" = True ]; }

cluster_start "$MODEL" 2 --ctx 512 --slots 4 --heartbeat-timeout 1500 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
[ "$(gen)" = "$ref" ] && ok "2 workers: baton-run's tokens" || bad "2 workers: wrong tokens"

# 1. SIGSTOP past the heartbeat timeout, then SIGCONT
w2=${CLUSTER_WORKER_PIDS[1]}
kill -STOP "$w2"
if ms=$(wait_until 15 workers_are 1); then ok "stopped worker declared dead after $ms ms (--heartbeat-timeout 1500)"; else bad "stopped worker not declared dead"; fi
wait_until 15 serving >/dev/null || bad "not serving on the survivor"
[ "$(gen)" = "$ref" ] && ok "served by the survivor" || bad "survivor: wrong tokens"
kill -CONT "$w2"
if ms=$(wait_until 15 workers_are 2); then ok "the worker rejoined by itself $ms ms after SIGCONT"; else bad "the worker did not rejoin: $(tail -3 "$WORK/worker-2.log")"; fi
kill -0 "$w2" 2>/dev/null && ok "the rejoined worker is the same process" || bad "the stopped worker exited"
CTL rebalance >/dev/null || bad "rebalance refused"
wait_until 15 serving >/dev/null || bad "not serving after the rebalance"
n=$(CTL nodes --json | jget 'sum(1 for n in d["nodes"] if n["state"] == "serving")')
[ "$n" = 2 ] && ok "rebalanced over both workers again" || bad "serving workers after the rebalance: $n"
[ "$(gen)" = "$ref" ] && ok "2 workers after the rejoin: baton-run's tokens" || bad "after the rejoin: wrong tokens"

# a coordinator that could not read for twice the heartbeat timeout keeps its workers
replans=$(status 'd["replans"]')
kill -STOP "${CLUSTER_PIDS[0]}"; sleep 3; kill -CONT "${CLUSTER_PIDS[0]}"
sleep 0.5
if [ "$(status 'd["workers"]')" = 2 ] && [ "$(status 'd["replans"]')" = "$replans" ] && grep -q "event loop stalled" "$WORK/coord.log"; then
    ok "coordinator stalled 3 s: no worker declared dead ($(grep -m1 -o 'event loop stalled.*' "$WORK/coord.log"))"
else bad "after the coordinator's stall: workers $(status 'd["workers"]'), replans $(status 'd["replans"]') (was $replans)"; fi
[ "$(gen)" = "$ref" ] && ok "after the stall: baton-run's tokens" || bad "after the stall: wrong tokens"

# 2. restart the coordinator on the same address
coord_pid=${CLUSTER_PIDS[0]}
kill -TERM "$coord_pid"; wait "$coord_pid" 2>/dev/null
t0=$(date +%s%N)
"$BIN/coordinator/baton-coord" --listen "$CLUSTER_ADDR" --model "$MODEL" --workers 2 --ctx 512 --slots 4 \
    > "$WORK/coord2.log" 2>&1 &
CLUSTER_PIDS+=($!)
if wait_until 30 serving >/dev/null; then ok "new coordinator serving $(( ($(date +%s%N) - t0) / 1000000 )) ms after the restart: both workers rejoined"
else bad "the workers did not rejoin the new coordinator: $(tail -3 "$WORK/coord2.log")"; fi
[ "$(gen)" = "$ref" ] && ok "after the coordinator restart: baton-run's tokens" || bad "after the restart: wrong tokens"
for p in "${CLUSTER_WORKER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || bad "worker $p exited"; done

# 3. an admin shutdown ends the workers too
CTL shutdown >/dev/null || bad "shutdown refused"
for p in "${CLUSTER_WORKER_PIDS[@]}"; do
    for k in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$p" 2>/dev/null; then bad "worker $p still running after the shutdown"; else
        wait "$p"; rc=$?; [ $rc = 0 ] && ok "worker $p left after the shutdown (exit 0)" || bad "worker $p: exit $rc"; fi
done

cluster_stop
cluster_check_logs || fail=1
grep -q -E "ERROR: AddressSanitizer|runtime error:" "$WORK/coord2.log" && { bad "sanitizer report in coord2.log"; }
[ $fail = 0 ] && echo "test_cluster_restart: all passed" || echo "test_cluster_restart: FAILED"
exit $fail
