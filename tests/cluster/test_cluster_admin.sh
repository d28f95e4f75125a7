#!/usr/bin/env bash
# test_cluster_admin.sh - node management on a loopback cluster of 3 workers (batonctl):
#  1. metrics: GET /metrics (libh2o) after one request: the generated-token and
#     request counters equal what the client received; `batonctl metrics` agrees;
#     an admin call on a client connection is refused (PERMISSION_DENIED); unknown node: exit 5;
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
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin admin 25
. "$SRC/tests/cluster-streams.sh"
streams_setup

# equal reported speeds: the planner's choices (every worker gets layers) do not depend on timing
SPEED=0.001
WORKER_OPTS="--speed $SPEED"
cluster_start "$MODEL" 3 --ctx 512 --slots 8 --metrics-listen 127.0.0.1:0 --heartbeat-timeout 2000 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
MPORT=$(sed -n 's/.*metrics on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CLUSTER_DIR/coord.log" | head -1)
scrape() { $PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics', timeout=10).read().decode())"; }
metric() { scrape | sed -n "s/^$1 //p"; }

# 1. metrics over HTTP
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 24 --ignore-eos --json | json_tokens)
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
# an admin call on a client connection (role CLIENT) is refused: speak the frame protocol by hand
# (proto/frame.h header; Hello{protocol_version=1, role=CLIENT, cluster_id, accepted}; AdminNodeOp{REBALANCE})
code=$($PY - "$CLUSTER_ADDR" <<'PYEOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
def send(kind, call, msg):
    s.sendall(struct.pack("<IHHIII", 0x314E5442, kind, 0, call, len(msg), 0) + msg)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed")
        b += c
    return b
def recv():
    magic, kind, flags, call, ml, pl = struct.unpack("<IHHIII", recv_exact(20))
    return kind, call, recv_exact(ml + pl)[:ml]
send(1, 0, b"\x08\x01\x10\x01\x1a\x05baton\x28\x01\x42\x20" + bytes(32))  # FRAME_HELLO with a 32-byte nonce
assert recv()[0] == 1
send(60, 0, b"")                                            # FRAME_AUTH_PROOF (no key: none needed)
assert recv()[0] == 61                                      # FRAME_AUTH_OK
send(52, 7, b"\x08\x04")                                   # FRAME_ADMIN_NODE_OP, op REBALANCE
while True:
    kind, call, msg = recv()
    if kind == 2 and call == 7:                               # CallStatus{code = 1, message = 2}
        print(msg[1] if msg[:1] == b"\x08" else 0, msg[msg.index(b"\x12") + 2:].decode() if b"\x12" in msg else "")
        break
PYEOF
)
[ "${code%% *}" = 7 ] && ok "admin call on a client connection: PERMISSION_DENIED (${code#* })" || bad "admin call as a client: '$code'"
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
replayed=$(grep -o '[0-9]* request(s) will be replayed' "$WORK/coord.log" | tail -1 | cut -d' ' -f1)
[ "${replayed:-0}" -gt 0 ] && ok "the drain switched plans mid-stream: $replayed request(s) paused and replayed" \
    || bad "the drain did not happen under load"
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
"$BIN/worker/baton-worker" --coordinator "$CLUSTER_ADDR" --model "$MODEL" --threads 1 --speed $SPEED > "$WORK/worker-4.log" 2>&1 &
CLUSTER_PIDS+=($!)
CLUSTER_WORKER_PIDS+=($!)
for k in $(seq 1 100); do
    s=$(CTL nodes --json | jget '",".join(n["state"] for n in d["nodes"] if n["id"] == 4)')
    [ "$s" = idle ] && break
    sleep 0.1
done
[ "$s" = idle ] && ok "worker 4 joined: idle until a rebalance" || bad "worker 4 after joining: '$s'"
CTL plan | grep -qE '^-  +4 .*\(idle\)' && ok "batonctl plan lists worker 4 as idle" || bad "plan does not list worker 4 as idle"
h=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep '^  worker 4 ')
case $h in *"no layers, idle"*) ok "baton health: ${h#  }" ;; *) bad "baton health shows the idle worker 4 as: $h" ;; esac
CTL nodes | grep -qE '^4 +[^ ]+ +idle +- ' && ok "batonctl nodes: worker 4 idle, layers -" || bad "batonctl nodes: $(CTL nodes | grep '^4 ')"
CTL rebalance >/dev/null || bad "rebalance failed"
for k in $(seq 1 100); do
    stages=$(CTL plan --json | jget '" ".join(str(n["id"]) for n in d["stages"]) if d["serving"] else ""')
    [ "$stages" = "1 2 3 4" ] && break
    sleep 0.1
done
[ "$stages" = "1 2 3 4" ] && ok "rebalance uses worker 4: $(CTL plan --json | jget '" ".join("%d:[%d,%d)" % (n["id"], n["layer_begin"], n["layer_end"]) for n in d["stages"])')" \
    || bad "stages after rebalance: '$stages'"
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${PROMPTS[3]}" --max-tokens "${LENS[3]}" --ignore-eos --json | json_tokens)
[ "$got" = "${REFS[3]}" ] && ok "4-stage plan: baton-run's tokens" || bad "4-stage plan: wrong tokens"
# draining the last worker that holds layers is refused (no plan would fit), nothing else changes
CTL drain 1 >/dev/null && CTL drain 3 >/dev/null && CTL drain 4 >/dev/null || bad "drain 1, 3, 4 failed"
# each drain re-plans: wait until worker 2 has loaded all 6 layers (it is `loading` for a while)
# and the others are drained, so that the state read below is the settled one
nodes_now() { CTL nodes --json | jget '" ".join(str(n["id"]) + ":" + n["state"] + ":" + str(n["layers"]) for n in d["nodes"])'; }
settled="1:drained:0 2:serving:6 3:drained:0 4:drained:0"
wait_for 30 eval '[ "$(nodes_now)" = "$settled" ]' || bad "after drain 1, 3, 4 the nodes did not settle: $(nodes_now)"
cluster_wait_serving 30 || fail=1
CTL drain 2 >/dev/null 2>"$WORK/refused.txt"; rc=$?
s=$(nodes_now)
[ $rc = 9 ] && [ "$s" = "$settled" ] && ok "draining the last worker refused: exit 9, $(cat "$WORK/refused.txt")" \
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
