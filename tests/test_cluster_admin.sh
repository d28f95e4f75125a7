#!/usr/bin/env bash
# test_cluster_admin.sh - node management on a loopback cluster of 3 workers (batonctl):
#  1. metrics: GET /metrics (libh2o) after one request: the generated-token and
#     request counters equal what the client received; `batonctl metrics` agrees;
#     a client connection may not make admin calls;
#  2. drain under load: 8 concurrent greedy streams, `batonctl drain 2` mid-stream:
#     no stream fails, each gets exactly baton-run's tokens, afterwards worker 2
#     holds no layers (the plan and the worker's own report say 0 bytes);
#     `undrain` + `rebalance` give it layers again;
#  3. a worker that joins later is idle until `rebalance`, and `batonctl plan` then shows it;
#     draining the last worker that holds layers is refused (exit 9); `remove` disconnects a worker;
#  4. `kill -9` of a worker while 8 streams run: every stream completes with the
#     tokens of a fault-free run; prints the time from the kill to the first token
#     after recovery.
set -u
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
SRC=${BATON_SRC:?set BATON_SRC to the source folder}
. "$SRC/deploy/cluster-lib.sh"
WORK=$(mktemp -d /tmp/baton-test-admin.XXXXXX)
CLUSTER_DIR=$WORK
fail=0
trap 'cluster_stop; [ $fail = 0 ] || tail -n 25 "$WORK"/*.log; rm -rf "$WORK"' EXIT
T() { timeout 60 "$@"; }
CTL() { T "$BIN/tools/batonctl" "$@" --server "$CLUSTER_ADDR"; }
PY=/usr/bin/python3
json_tokens() { $PY -c 'import json,sys; d=json.loads(sys.stdin.read()); print(",".join(map(str,d["tokens"])))'; }
# jget EXPR: evaluates EXPR on the JSON object d read from stdin
jget() { $PY -c "import json,sys; d=json.loads(sys.stdin.read()); print($1)"; }
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fail=1; }

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
# 8 streams: prompts and lengths (some long), references from baton-run
N_STREAMS=8
LENS=(300 120 260 60 300 90 200 150)
for i in $(seq 0 $((N_STREAMS - 1))); do
    PROMPTS[$i]="$((i + 5)),$((i * 7 + 3)),$((i * 13 + 11))"
    REFS[$i]=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "${PROMPTS[$i]}" --max-tokens "${LENS[$i]}" --json | json_tokens)
done

# start_streams TAG: runs the 8 generations in the background (pids in STREAM_PIDS)
start_streams() {
    STREAM_PIDS=()
    for i in $(seq 0 $((N_STREAMS - 1))); do
        "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${PROMPTS[$i]}" --max-tokens "${LENS[$i]}" \
            --ignore-eos --json > "$WORK/$1-$i.json" 2> "$WORK/$1-$i.err" &
        STREAM_PIDS+=($!)
    done
}
# wait_midstream N: until all 8 streams run and N more tokens were generated
wait_midstream() {
    local base k s
    base=$(CTL status --json | jget 'd["tokens_generated"]')
    for k in $(seq 1 400); do
        s=$(CTL status --json | jget 'str(d["active"]) + " " + str(d["tokens_generated"])')
        [ "${s% *}" = $N_STREAMS ] && [ "${s#* }" -ge $((base + $1)) ] && return 0
        sleep 0.02
    done
    echo "streams did not start"; return 1
}
# check_streams TAG WHAT: every stream exited 0 with baton-run's tokens
check_streams() {
    local i rc good=0
    for i in $(seq 0 $((N_STREAMS - 1))); do
        wait "${STREAM_PIDS[$i]}"; rc=$?
        got=$(json_tokens < "$WORK/$1-$i.json" 2>/dev/null)
        if [ $rc = 0 ] && [ "$got" = "${REFS[$i]}" ]; then good=$((good + 1)); else
            echo "    stream $i: exit $rc $(cat "$WORK/$1-$i.err"), tokens equal: $([ "$got" = "${REFS[$i]}" ] && echo yes || echo no)"; fi
    done
    [ $good = $N_STREAMS ] && ok "$2: all $N_STREAMS streams OK with baton-run's tokens" || bad "$2: $good of $N_STREAMS streams correct"
}
# node_field ID EXPR: EXPR on the node n with that id in `batonctl nodes --json`
node_field() { CTL nodes --json | jget "[$2 for n in d['nodes'] if n['id'] == $1][0]"; }

cluster_start "$MODEL" 3 --ctx 512 --slots 8 --metrics-listen 127.0.0.1:0 --heartbeat-timeout 2000 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
MPORT=$(sed -n 's/.*metrics on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CLUSTER_DIR/coord.log" | head -1)
scrape() { $PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics', timeout=10).read().decode())"; }
metric() { scrape | sed -n "s/^$1 //p"; }

# 1. metrics over HTTP
got=$(T "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 24 --ignore-eos --json | json_tokens)
n_got=$(echo "$got" | tr ',' '\n' | grep -c .)
text=$(scrape)
gen=$(echo "$text" | sed -n 's/^baton_tokens_generated_total //p')
okreq=$(echo "$text" | sed -n 's/^baton_requests_total{status="OK"} //p')
prompt=$(echo "$text" | sed -n 's/^baton_tokens_prompt_total //p')
serving_nodes=$(echo "$text" | sed -n 's/^baton_nodes{state="serving"} //p')
busy=$(echo "$text" | grep -c '^baton_stage_busy_seconds_total{node=')
if [ "$gen" = "$n_got" ] && [ "$n_got" = 24 ] && [ "$okreq" = 1 ] && [ "$prompt" = 4 ] && [ "$serving_nodes" = 3 ] && [ "$busy" = 3 ]; then
    ok "GET /metrics: generated tokens $gen = received $n_got, requests OK $okreq, prompt tokens $prompt, 3 serving nodes"
else
    bad "GET /metrics: generated $gen (client got $n_got), OK $okreq, prompt $prompt, serving $serving_nodes, busy lines $busy"
fi
ctl_gen=$(CTL metrics | sed -n 's/^baton_tokens_generated_total //p')
[ "$ctl_gen" = "$gen" ] && ok "batonctl metrics: the same counter ($ctl_gen)" || bad "batonctl metrics: $ctl_gen != $gen"
$PY -c "import urllib.request,sys
try: urllib.request.urlopen('http://127.0.0.1:$MPORT/nothing', timeout=10); sys.exit(1)
except urllib.error.HTTPError as e: sys.exit(0 if e.code == 404 else 1)" && ok "GET /nothing: 404" || bad "GET /nothing is not a 404"
CTL drain 99 >/dev/null 2>"$WORK/nf.txt"; rc=$?
[ $rc = 5 ] && ok "drain of an unknown node: exit 5 ($(cat "$WORK/nf.txt"))" || bad "drain 99: exit $rc"
CTL frobnicate >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok "unknown command: exit 2" || bad "unknown command: exit $rc"

# 2. drain under load, then undrain + rebalance
start_streams drain
wait_midstream 60 || fail=1
CTL drain 2 > "$WORK/drain.txt"; rc=$?
[ $rc = 0 ] && ok "drain 2: $(cat "$WORK/drain.txt")" || bad "drain 2: exit $rc"
check_streams drain "drain under load"
failed=$(CTL status --json | jget 'd["requests_failed"]')
[ "$failed" = 0 ] && ok "no request failed" || bad "$failed request(s) failed"
for k in $(seq 1 60); do # the worker's own report (a heartbeat each second) says it freed its slice
    s=$(node_field 2 'n["state"] + " " + str(n["layers"]) + " " + str(n["weight_bytes"] + n["kv_bytes"])')
    [ "$s" = "drained 0 0" ] && break
    sleep 0.1
done
[ "$s" = "drained 0 0" ] && ok "worker 2 after the drain: state drained, 0 layers, 0 bytes held" || bad "worker 2 after the drain: $s"
grep -q "gives this worker no layers: slice freed" "$WORK/worker-2.log" && ok "worker 2 logged that it freed its slice" || bad "worker 2 did not free its slice"
CTL undrain 2 >/dev/null && CTL rebalance >/dev/null || bad "undrain/rebalance failed"
cluster_wait_serving 30 || fail=1
s=$(node_field 2 'n["state"] + " " + str(n["layers"])')
[ "${s% *}" = serving ] && [ "${s#* }" -gt 0 ] && ok "undrain + rebalance: worker 2 $s layers" || bad "after rebalance worker 2: $s"

# 3. a worker that joins later: idle until rebalance, then in the plan
"$BIN/worker/baton-worker" --coordinator "$CLUSTER_ADDR" --model "$MODEL" --threads 1 > "$WORK/worker-4.log" 2>&1 &
CLUSTER_PIDS+=($!)
CLUSTER_WORKER_PIDS+=($!)
for k in $(seq 1 100); do
    s=$(CTL nodes --json | jget '",".join(n["state"] for n in d["nodes"] if n["id"] == 4)')
    [ "$s" = idle ] && break
    sleep 0.1
done
[ "$s" = idle ] && ok "worker 4 joined: idle until a rebalance" || bad "worker 4 after joining: '$s'"
CTL plan | grep -qE '^-  +4 .*\(idle\)' && ok "batonctl plan lists worker 4 as idle" || bad "plan does not list worker 4 as idle"
CTL rebalance >/dev/null || bad "rebalance failed"
for k in $(seq 1 100); do
    stages=$(CTL plan --json | jget '" ".join(str(n["id"]) for n in d["stages"]) if d["serving"] else ""')
    [ "$stages" = "1 2 3 4" ] && break
    sleep 0.1
done
[ "$stages" = "1 2 3 4" ] && ok "rebalance uses worker 4: $(CTL plan --json | jget '" ".join("%d:[%d,%d)" % (n["id"], n["layer_begin"], n["layer_end"]) for n in d["stages"])')" \
    || bad "stages after rebalance: '$stages'"
got=$(T "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${PROMPTS[3]}" --max-tokens "${LENS[3]}" --ignore-eos --json | json_tokens)
[ "$got" = "${REFS[3]}" ] && ok "4-stage plan: baton-run's tokens" || bad "4-stage plan: wrong tokens"
# draining the last worker that holds layers is refused (no plan would fit), nothing else changes
CTL drain 1 >/dev/null && CTL drain 3 >/dev/null && CTL drain 4 >/dev/null || bad "drain 1, 3, 4 failed"
CTL drain 2 >/dev/null 2>"$WORK/refused.txt"; rc=$?
s=$(CTL nodes --json | jget '" ".join(str(n["id"]) + ":" + n["state"] + ":" + str(n["layers"]) for n in d["nodes"])')
[ $rc = 9 ] && [ "$s" = "1:drained:0 2:serving:6 3:drained:0 4:drained:0" ] && ok "draining the last worker refused: exit 9, $(cat "$WORK/refused.txt")" \
    || bad "drain of the last worker: exit $rc, nodes $s, $(cat "$WORK/refused.txt")"
CTL undrain 1 >/dev/null && CTL undrain 3 >/dev/null && CTL undrain 4 >/dev/null && CTL rebalance >/dev/null || bad "undrain failed"
cluster_wait_serving 30 || fail=1
CTL remove 4 > "$WORK/remove.txt"; rc=$?
for k in $(seq 1 100); do
    s=$(CTL nodes --json | jget '",".join(n["state"] for n in d["nodes"] if n["id"] == 4)')
    [ "$s" = removed ] && break
    sleep 0.1
done
[ $rc = 0 ] && [ "$s" = removed ] && ok "remove 4: $(cat "$WORK/remove.txt") -> $s" || bad "remove 4: exit $rc, state '$s'"
cluster_wait_serving 30 || fail=1

# 4. kill -9 of a worker while 8 streams run
start_streams kill
wait_midstream 60 || fail=1
victim=${CLUSTER_WORKER_PIDS[1]}
t_kill=$(date +%s.%N)
{ kill -KILL "$victim"; wait "$victim"; } 2>/dev/null
check_streams kill "kill -9 of worker 2"
rec=$(metric baton_last_recovery_timestamp_seconds)
pause=$($PY -c "print('%.0f' % ((float('$rec') - float('$t_kill')) * 1000))")
[ "$pause" -gt 0 ] 2>/dev/null && ok "kill to the first token after recovery: $pause ms" || bad "recovery time: '$pause' (recovered at '$rec')"
s=$(CTL nodes --json | jget '" ".join(str(n["id"]) + ":" + n["state"] for n in d["nodes"])')
echo "$s" | grep -q "2:dead" && ok "nodes after the kill: $s" || bad "nodes after the kill: $s"

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_admin: all passed" || echo "test_cluster_admin: FAILED"
exit $fail
