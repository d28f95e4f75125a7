#!/usr/bin/env bash
# test_cluster_conn_limits.sh - connections that never authenticate cannot lock
# clients out: the coordinator and one worker run under `ulimit -n 256` with
# --handshake-timeout 2000; 1000 idle TCP connections to the coordinator and 300
# to the worker's stage port are opened and held; then
#  1. a normal `baton generate` (10 s client timeout) is served within a few
#     seconds, with the tokens baton-run gives;
#  2. the coordinator's and the worker's logs show the connection-limit line
#     (evictions of the oldest unauthenticated connections);
#  3. the worker is still serving (alive, in the plan).
# Before the handshake deadline and the limit existed, the held connections
# used up the descriptors: every later accept failed (libuv accepts and closes
# what waits when out of descriptors), so the generate was cut off.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin conn_limits

MODEL=$WORK/tiny4.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 4 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens 8 --json | json_tokens)

# the daemons get 256 descriptors; this shell's soft limit comes back after
nofile=$(ulimit -Sn)
ulimit -Sn 256
WORKER_OPTS="--speed 0.001 --handshake-timeout 2000" cluster_start "$MODEL" 1 --ctx 256 --slots 2 \
    --handshake-timeout 2000 || exit 1
ulimit -Sn "$nofile"
cluster_wait_serving 60 || { fail=1; exit 1; }
WORKER_ADDR=$(sed -n 's/.*joined .* (listening on \([0-9.]*:[0-9]*\),.*/\1/p' "$WORK/worker-1.log" | head -1)
[ -n "$WORKER_ADDR" ] || { bad "no stage address in the worker's log"; exit 1; }

# hold 1000 + 300 idle connections (bounded: closed at "$WORK/done" or after 60 s)
T /usr/bin/python3 - "${CLUSTER_ADDR##*:}" "${WORKER_ADDR##*:}" "$WORK" <<'EOF' &
import os, resource, socket, sys, time
coord_port, worker_port, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
held, failed = [], 0
for port, n in ((coord_port, 1000), (worker_port, 300)):
    for _ in range(n):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=3))
        except OSError:
            failed += 1
open(work + "/held.tmp", "w").write("%d %d\n" % (len(held), failed))
os.rename(work + "/held.tmp", work + "/held")
end = time.time() + 60
while time.time() < end and not os.path.exists(work + "/done"):
    time.sleep(0.1)
for s in held:
    s.close()
EOF
CLUSTER_PIDS+=($!)
for i in $(seq 1 300); do [ -s "$WORK/held" ] && break; sleep 0.1; done
[ -s "$WORK/held" ] && ok "opened idle connections (held, failed): $(cat "$WORK/held")" || bad "the idle connections were not opened"

# 1. a client still gets in, at once
t0=$(date +%s.%N)
got=$(timeout 10 "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos \
    --json 2> "$WORK/generate.err" | json_tokens)
secs=$(echo "$(date +%s.%N) - $t0" | bc)
if [ "$got" = "$ref" ] && [ "$(echo "$secs < 5" | bc)" = 1 ]; then
    ok "generate among the idle connections: [$got] in ${secs} s"
else
    bad "generate: [$got] (baton-run: [$ref]) in ${secs} s; $(head -c 300 "$WORK/generate.err")"
fi
touch "$WORK/done"

# 2. the limit said what it did
line=$(grep -m1 "connection limit .*evicted" "$WORK/coord.log")
[ -n "$line" ] && ok "coordinator: $line" || bad "no connection-limit line in the coordinator's log"
wline=$(grep -m1 "connection limit .*evicted" "$WORK/worker-1.log")
[ -n "$wline" ] && ok "worker: $wline" || bad "no connection-limit line in the worker's log"

# 3. the worker still serves
kill -0 "${CLUSTER_WORKER_PIDS[0]}" 2>/dev/null && ok "the worker is alive" || bad "the worker died"
n=$(T "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json | jget 'd["workers"]')
[ "$n" = 1 ] && ok "the plan still has its worker" || bad "workers in the plan: $n"
got=$(T "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos --json | json_tokens)
[ "$got" = "$ref" ] && ok "served again after the flood: [$got]" || bad "second generate: [$got]"

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_conn_limits: all passed" || echo "test_cluster_conn_limits: FAILED"
exit $fail
