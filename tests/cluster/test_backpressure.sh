#!/usr/bin/env bash
# test_backpressure.sh - a slow successor slows its predecessor instead of
# growing the predecessor's memory without bound.
#
# A 3-worker loopback cluster whose workers stop taking frames while more than
# LIMIT bytes wait for their successor (--queue-limit), and a coordinator that
# lets many micro-batches fly (--inflight 256): 16 streams with 500-token
# prompts put about 8 MiB of hidden states on the hop into the last stage. The
# last worker is stopped (SIGSTOP) before they start, so everything piles up in
# front of it. Checks:
#  1. the predecessor's queue reaches the limit (backpressure engaged) and then
#     stops growing: its frames sent stay put, and its queue peak (health's
#     queue_peak) stays within LIMIT + the frames of the jobs it had accepted
#     (MAX_PENDING_JOBS + 2 in worker/main.c), a small part of the 8 MiB;
#  2. after SIGCONT every stream completes with exactly the tokens of baton-run.
set -u
T_TIMEOUT=120
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin backpressure
stopped=""
gen_pids=()
test_on_exit() { [ -n "$stopped" ] && kill -CONT "$stopped"; }

LIMIT=262144    # --queue-limit of every worker
BATCH=64        # tokens per micro-batch; the tiny preset's width is 256 floats
FRAME=$((BATCH * 256 * 4 + 4096)) # largest stage frame on a hop, headers included
BOUND=$((LIMIT + 10 * FRAME))
NSTREAMS=16
MODEL=$WORK/tiny3.gguf
# the tiny preset with a narrow feed-forward: cheap layers, the same 1 KiB per token on a hop
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 3 --ff 64 --type q8_0 -o "$MODEL" >/dev/null 2>&1 \
    || { echo "FAIL: mkmodel"; exit 1; }
prompts=("$(/usr/bin/python3 -c 'print(",".join(str(i % 500) for i in range(1, 501)))')"
         "$(/usr/bin/python3 -c 'print(",".join(str((i * 7 + 3) % 500) for i in range(500)))')")
refs=()
for p in "${prompts[@]}"; do
    refs+=("$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens 4 --json | json_tokens)")
done

WORKER_OPTS="--queue-limit $LIMIT --speed 0.001" cluster_start "$MODEL" 3 --ctx 520 --slots $NSTREAMS \
    --inflight 256 --heartbeat-timeout 3600000 --max-batch $BATCH --chunk $BATCH || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }

# node_field ID FIELD: FIELD of worker ID from `baton health --json`
health() { TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json; }
node_field() {
    health | /usr/bin/python3 -c "import json,sys; print([n['$2'] for n in json.load(sys.stdin)['nodes'] if n['id'] == $1][0])"
}
# The last stage and its predecessor, and the pid of the last one (its log names its address).
read -r last_id last_addr pred_id < <(health | /usr/bin/python3 -c '
import json, sys
nodes = json.load(sys.stdin)["nodes"]
last = [n for n in nodes if n["head"]][0]
pred = [n for n in nodes if n["layer_end"] == last["layer_begin"]][0]
print(last["id"], last["address"], pred["id"])')
for k in "${!CLUSTER_WORKER_PIDS[@]}"; do
    grep -q "listening on $last_addr" "$WORK/worker-$((k + 1)).log" && stopped=${CLUSTER_WORKER_PIDS[$k]}
done
[ -n "$stopped" ] || { bad "cannot find the last stage's process"; exit 1; }
kill -STOP "$stopped"
echo "  (${SECONDS}s) stopped the last stage (worker $last_id, pid $stopped); its predecessor is worker $pred_id"

for i in $(seq 0 $((NSTREAMS - 1))); do
    "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$((i % 2))]}" --max-tokens 4 --ignore-eos \
        --json > "$WORK/gen-$i.json" 2> "$WORK/gen-$i.err" &
    gen_pids+=($!)
    CLUSTER_PIDS+=($!) # cluster_stop ends them if the test stops early
done

# 1. the predecessor's queue fills up to the limit, then it stops sending
peak=0
for i in $(seq 1 600); do
    peak=$(node_field "$pred_id" queue_peak)
    [ "$peak" -ge "$LIMIT" ] && break
    sleep 0.1
done
[ "$peak" -ge "$LIMIT" ] && ok "the predecessor's queue reached the limit ($peak >= $LIMIT bytes): backpressure engaged (${SECONDS}s)" \
    || bad "the predecessor's queue never reached the limit (peak $peak)"
# the jobs it had accepted finish; then it must send nothing more
frames1=-1
for i in $(seq 1 100); do
    f=$(node_field "$pred_id" hop_frames)
    [ "$f" = "$frames1" ] && break
    frames1=$f
    sleep 1.3 # longer than the period of a worker's status (1 s), so an equal count is a real pause
done
rss1=$(node_field "$pred_id" peak_rss)
sleep 1.5 # an observation window (3 status heartbeats), not a synchronisation
frames2=$(node_field "$pred_id" hop_frames)
peak2=$(node_field "$pred_id" queue_peak)
rss2=$(node_field "$pred_id" peak_rss)
[ "$frames2" = "$frames1" ] && ok "while its successor is stopped the predecessor sends nothing more ($frames2 frames)" \
    || bad "the predecessor kept sending: $frames1 -> $frames2 frames"
[ "$peak2" -le "$BOUND" ] && ok "its queue peak $peak2 bytes <= limit + accepted jobs = $BOUND bytes" \
    || bad "queue peak $peak2 > $BOUND bytes"
echo "       predecessor peak RSS $((rss1 / 1024)) KiB -> $((rss2 / 1024)) KiB during the stall"

# 2. the successor resumes: every stream completes with the fault-free tokens
kill -CONT "$stopped"
stopped=""
good=0
for i in $(seq 0 $((NSTREAMS - 1))); do
    wait_pid "${gen_pids[$i]}"
    rc=$?
    got=$(json_tokens < "$WORK/gen-$i.json" 2>/dev/null)
    if [ $rc = 0 ] && [ "$got" = "${refs[$((i % 2))]}" ]; then good=$((good + 1)); else
        echo "       stream $i: exit $rc, [$got] != [${refs[$((i % 2))]}] $(cat "$WORK/gen-$i.err")"; fi
done
gen_pids=()
[ $good = $NSTREAMS ] && ok "after SIGCONT all $NSTREAMS streams completed with baton-run's tokens (${SECONDS}s)" \
    || bad "$good of $NSTREAMS streams correct"
sent=$(node_field "$pred_id" hop_bytes)
[ "$peak2" -lt $((sent / 4)) ] && ok "the predecessor sent $sent bytes in all; at most $peak2 ever waited" \
    || bad "the queue peak $peak2 is not small next to the $sent bytes sent"

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_backpressure: all passed" || echo "test_backpressure: FAILED"
exit $fail
