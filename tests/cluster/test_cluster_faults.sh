#!/usr/bin/env bash
# test_cluster_faults.sh - losing workers on a loopback cluster:
#  1. a 3-worker cluster loses its middle worker during a generation: the
#     coordinator re-plans over the two survivors and replays the request from
#     its record, the client gets every token of a fault-free run (equal to
#     baton-run) with status OK; later requests are served by the survivors;
#  2. with every worker gone a request ends with UNAVAILABLE (exit code 14)
#     and a message saying why, instead of waiting forever;
#  3. a client with the wrong cluster id is refused with a clear message.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin faults

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens 8 --json | json_tokens)
cluster_start "$MODEL" 3 --ctx 512 --slots 4 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos --json | json_tokens)
[ "$got" = "$ref" ] && echo "  ok   3 workers: [$got]" || { echo "  FAIL 3 workers: [$got] != [$ref]"; fail=1; }

# 1. the middle worker dies while a long generation runs: the coordinator
#    re-plans and replays it from its record; the client sees a pause, not an
#    error, and receives exactly the tokens of a fault-free run
LONG=300
ref_long=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens $LONG --json | json_tokens)
TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens $LONG --ignore-eos --json \
    > "$WORK/long.json" 2>"$WORK/long.err" &
long_pid=$!
for k in $(seq 1 100); do
    TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep -q "1 active" && break
    sleep 0.02
done
victim=${CLUSTER_WORKER_PIDS[1]}
{ kill -KILL "$victim"; wait "$victim"; } 2>/dev/null
wait "$long_pid"
rc=$?
got=$(json_tokens < "$WORK/long.json" 2>/dev/null)
replayed=$(grep -c "replayed" "$WORK/coord.log")
if [ $rc = 0 ] && [ "$got" = "$ref_long" ] && [ "$replayed" -ge 1 ]; then
    echo "  ok   a worker died mid-generation: the request was replayed and its $LONG tokens equal baton-run's"
else
    echo "  FAIL replay: exit code $rc, $(cat "$WORK/long.err"), replay logged $replayed time(s), tokens equal: $([ "$got" = "$ref_long" ] && echo yes || echo no)"
    fail=1
fi
cluster_wait_serving 30 || fail=1
n=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep -c 'layers \[')
plan=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | sed -n 's/.*layers \(\[[0-9]*,[0-9]*)\).*/\1/p' | tr '\n' ' ')
[ "$n" = 2 ] && echo "  ok   re-planned over the 2 survivors: $plan" || { echo "  FAIL: $n workers after the loss"; fail=1; }
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos --json | json_tokens)
[ "$got" = "$ref" ] && echo "  ok   2 survivors: [$got]" || { echo "  FAIL after re-plan: [$got] != [$ref]"; fail=1; }

# 2. nobody left
for p in "${CLUSTER_WORKER_PIDS[0]}" "${CLUSTER_WORKER_PIDS[2]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null; done
sleep 0.3
TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6 --max-tokens 2 >/dev/null 2>"$WORK/unavail.txt"
rc=$?
[ $rc = 14 ] && echo "  ok   no workers: exit code 14 ($(tail -1 "$WORK/unavail.txt"))" || { echo "  FAIL no workers: exit code $rc"; fail=1; }

# 3. wrong cluster id
TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --cluster-id other >/dev/null 2>"$WORK/refused.txt"
rc=$?
if [ $rc = 7 ] && grep -q "cluster id" "$WORK/refused.txt"; then echo "  ok   wrong cluster id refused: $(cat "$WORK/refused.txt")"; else
    echo "  FAIL wrong cluster id: exit $rc, $(cat "$WORK/refused.txt")"; fail=1; fi

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_faults: all passed" || echo "test_cluster_faults: FAILED"
exit $fail
