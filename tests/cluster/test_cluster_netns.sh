#!/usr/bin/env bash
# test_cluster_netns.sh - a worker lost to the network, not to a crash.
#
# The test builds its own network (as root): a hub namespace holding the
# coordinator, the clients and a bridge, and one namespace per worker joined to
# the bridge by a veth pair; addresses 10.77.0.0/24 exist inside these
# namespaces only. While 8 greedy streams run, the hub side of worker 2's link
# goes down (`ip link set ... down`): no connection closes, the coordinator only
# stops hearing worker 2. It must declare it dead within --heartbeat-timeout,
# re-plan over workers 1 and 3 (still reachable) and finish every stream with
# the tokens of a fault-free run. Everything is removed in the exit trap.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin netns 25
SUFFIX=${WORK##*.}
. "$SRC/deploy/netns-lib.sh" # the network: bridge br0 in the hub (10.77.0.1), worker K at 10.77.0.(K+1)
TIMEOUT_MS=1500
test_on_exit() { netns_destroy; }
if [ "$(id -u)" != 0 ] || ! netns_network "baton-$SUFFIX" 3 2>"$WORK/netns.err"; then
    echo "FAIL: this test needs root and network namespaces: $(cat "$WORK/netns.err" 2>/dev/null)"
    fail=1
    exit 1
fi
HUB=$NETNS_HUB
RUN="ip netns exec $HUB"
. "$SRC/tests/cluster-streams.sh"
streams_setup

netns_bg "$HUB" "$WORK/coord.log" "$BIN/coordinator/baton-coord" --listen 10.77.0.1:0 --model "$MODEL" --workers 3 \
    --ctx 512 --slots 8 --heartbeat-timeout $TIMEOUT_MS --metrics-listen 10.77.0.1:0
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on 10\.77\.0\.1:\([0-9]*\).*/\1/p' "$WORK/coord.log" | head -1)
    MPORT=$(sed -n 's/.*metrics on http:\/\/10\.77\.0\.1:\([0-9]*\).*/\1/p' "$WORK/coord.log" | head -1)
    [ -n "$port" ] && [ -n "$MPORT" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "FAIL: coordinator did not start"; fail=1; exit 1; }
CLUSTER_ADDR=10.77.0.1:$port
[ -n "$MPORT" ] || { echo "FAIL: no metrics port in the coordinator's log"; fail=1; exit 1; }
for k in 1 2 3; do
    netns_bg "${NETNS_W[$k]}" "$WORK/worker-$k.log" "$BIN/worker/baton-worker" --coordinator "$CLUSTER_ADDR" \
        --model "$MODEL" --threads 1 --speed 0.001 --listen "${NETNS_IP[$k]}:0"
    sleep 0.1 # join in order: worker 1 is the first stage
done
for _ in $(seq 1 300); do
    [ "$(CTL status --json 2>/dev/null | jget 'd["serving"]')" = True ] && break
    sleep 0.1
done
s=$(CTL plan --json | jget '" ".join("%d@%s" % (n["id"], n["address"]) for n in d["stages"])')
echo "$s" | grep -q "^1@10.77.0.2:[0-9]* 2@10.77.0.3:[0-9]* 3@10.77.0.4:[0-9]*$" && ok "3 workers in 3 namespaces serve: $s" \
    || { bad "plan over the namespaces: '$s'"; exit 1; }

start_streams cut
wait_midstream 60 || fail=1
t_cut=$(date +%s.%N)
ip -n "$HUB" link set link2 down
check_streams cut "link of worker 2 cut"
metrics=$($RUN /usr/bin/python3 -c "import urllib.request; print(urllib.request.urlopen('http://10.77.0.1:$MPORT/metrics', timeout=10).read().decode())")
t_replan=$(echo "$metrics" | sed -n 's/^baton_last_replan_timestamp_seconds //p')
t_rec=$(echo "$metrics" | sed -n 's/^baton_last_recovery_timestamp_seconds //p')
detect=$(/usr/bin/python3 -c "print('%.0f' % ((float('$t_replan') - float('$t_cut')) * 1000))")
pause=$(/usr/bin/python3 -c "print('%.0f' % ((float('$t_rec') - float('$t_cut')) * 1000))")
why=$(grep -o "worker 2 left: silent for [0-9]* ms" "$WORK/coord.log" | head -1)
if [ -n "$why" ] && [ "$detect" -ge $((TIMEOUT_MS - 1000)) ] && [ "$detect" -le $((TIMEOUT_MS + 500)) ]; then
    ok "cut detected and re-planned $detect ms after the cut (timeout $TIMEOUT_MS ms: $why); first token after $pause ms"
else
    bad "detection: re-plan $detect ms after the cut, log '$why'"
fi
s=$(CTL nodes --json | jget '" ".join("%d:%s" % (n["id"], n["state"]) for n in d["nodes"]) + " layers " + str(sum(n["layers"] for n in d["nodes"]))')
[ "$s" = "1:serving 3:serving 2:dead layers 6" ] && ok "nodes after the cut: $s" || bad "nodes after the cut: $s"
got=$(TC $RUN "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${PROMPTS[5]}" --max-tokens "${LENS[5]}" --ignore-eos --json | json_tokens)
[ "$got" = "${REFS[5]}" ] && ok "the 2 reachable workers serve new requests" || bad "after the cut: wrong tokens"

netns_stop
if grep -l -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$WORK"/*.log >/dev/null 2>&1; then
    bad "sanitizer report in the logs"
fi
[ $fail = 0 ] && echo "test_cluster_netns: all passed" || echo "test_cluster_netns: FAILED"
exit $fail
