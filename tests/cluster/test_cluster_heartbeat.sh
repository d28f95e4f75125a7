#!/usr/bin/env bash
# test_cluster_heartbeat.sh - the heartbeat timeout without root (test_cluster_netns.sh
# covers it with network namespaces, as root only): a coordinator with
# --heartbeat-timeout 1500 and two workers; SIGSTOP of worker 2 (its connection
# stays open, it just goes silent) must get it declared dead and the layers
# re-planned onto worker 1 within a few seconds; requests then complete on
# worker 1 alone with baton-run's tokens. SIGCONT and kill at the end.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin heartbeat 25
stopped=""
test_on_exit() { [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null; }
CTL() { TC "$BIN/tools/batonctl" "$@" --server "$CLUSTER_ADDR"; }
nodes_now() { CTL nodes --json | jget '" ".join(str(n["id"]) + ":" + n["state"] + ":" + str(n["layers"]) for n in d["nodes"])'; }

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens 12 --json | json_tokens)
WORKER_OPTS="--speed 0.001" cluster_start "$MODEL" 2 --ctx 256 --slots 2 --heartbeat-timeout 1500 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
s=$(nodes_now)
case $s in "1:serving:"[1-9]*" 2:serving:"[1-9]*) ok "two workers share the layers: $s" ;; *) bad "before the stop: $s" ;; esac

stopped=${CLUSTER_WORKER_PIDS[1]}
kill -STOP "$stopped"
t0=$(date +%s.%N)
# dead after 1.5 s of silence; the plan then gives worker 1 all 6 layers
wait_for 10 eval '[ "$(nodes_now)" = "1:serving:6 2:dead:0" ]'
s=$(nodes_now)
dt=$($PY -c "print('%.1f' % ($(date +%s.%N) - $t0))")
[ "$s" = "1:serving:6 2:dead:0" ] && ok "silent worker 2 declared dead and re-planned in $dt s: $s" \
    || bad "$dt s after SIGSTOP of worker 2: $s"
grep "left: silent for" "$WORK/coord.log" | head -1 | sed 's/^/       /'
cluster_wait_serving 10 || fail=1
for k in 1 2; do
    got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 12 --ignore-eos --json | json_tokens)
    [ "$got" = "$ref" ] && ok "request $k on worker 1 alone: baton-run's tokens [$got]" || bad "request $k: [$got] != [$ref]"
done

kill -CONT "$stopped"
kill -KILL "$stopped" 2>/dev/null
wait "$stopped" 2>/dev/null
stopped=""
cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_heartbeat: all passed" || echo "test_cluster_heartbeat: FAILED"
exit $fail
