#!/usr/bin/env bash
# test_cluster_concurrent.sh - continuous batching on a 3-worker loopback cluster:
#  1. 16 concurrent streams with different prompts: each equals its solo
#     baton-run output (batched with others, it must not change);
#  2. a client that disconnects mid-generation frees its KV slot on every worker
#     (seen through the health call) while another stream carries on unharmed;
#     one that cancels (Ctrl-C: a Cancel frame) ends with CANCELLED and frees it too;
#  3. a deadline ends a call with DEADLINE_EXCEEDED (exit code 4);
#  4. each worker's peak RSS (VmHWM) stays below its weights + KV cache + 64 MiB.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin conc
BG=()
test_on_exit() { for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done; }
health_json() { TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json; }
# slots in use on each worker, e.g. "1 1 1"
slots_used() { health_json | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(n["slots_used"]) for n in json.load(sys.stdin)["nodes"]))'; }

MODEL=$WORK/tiny8.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 8 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
N=16
MAXTOK=10
prompts=() refs=()
for i in $(seq 0 $((N - 1))); do
    len=$(( 1 + (i * 7) % 90 ))                       # 1 to 85 tokens: some longer than a chunk
    p=$(seq -s, $((i + 5)) $((i % 3 + 1)) $((i + 5 + (len - 1) * (i % 3 + 1))))
    prompts+=("$p")
    refs+=("$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens $MAXTOK --json | json_tokens)")
done
echo "solo references computed for $N prompts"

cluster_start "$MODEL" 3 --ctx 1024 --slots 16 --chunk 32 --max-batch 64 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }

# 1. sixteen streams at once
for i in $(seq 0 $((N - 1))); do
    TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$i]}" --max-tokens $MAXTOK --ignore-eos \
        --json > "$WORK/out-$i.json" 2>"$WORK/err-$i.txt" &
    BG+=($!)
done
for p in "${BG[@]}"; do wait "$p"; done
BG=()
ok=0
for i in $(seq 0 $((N - 1))); do
    got=$(json_tokens < "$WORK/out-$i.json" 2>/dev/null)
    if [ "$got" = "${refs[$i]}" ]; then ok=$((ok + 1)); else
        echo "  FAIL stream $i: [$got] != solo [${refs[$i]}] ($(cat "$WORK/err-$i.txt"))"
        fail=1
    fi
done
echo "concurrent: $ok/$N streams equal to their solo baton-run output"

# 2. a client that goes away frees its slot everywhere; another stream continues
# (no timeout wrapper: $! must be the client itself, so that killing it closes its connection)
"$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "1,2,3,4" --max-tokens 1000 --ignore-eos > "$WORK/long.txt" 2>&1 &
long_pid=$!
BG+=($long_pid)
TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[3]}" --max-tokens $MAXTOK --ignore-eos \
    --json > "$WORK/other.json" 2>&1 &
other_pid=$!
BG+=($other_pid)
busy=""
for k in $(seq 1 100); do
    u=$(slots_used)
    case " $u " in *" 0 "*) ;; *) busy=$u; break ;; esac
    sleep 0.05
done
[ -n "$busy" ] || { echo "  FAIL: the long request never showed up in the workers' slots"; fail=1; }
echo "while generating: slots used per worker: $busy"
{ kill -KILL "$long_pid"; wait "$long_pid"; } 2>/dev/null
t_kill=$(date +%s.%N)
wait "$other_pid"
got=$(json_tokens < "$WORK/other.json")
[ "$got" = "${refs[3]}" ] && echo "  ok   the other stream finished unharmed" || { echo "  FAIL other stream [$got] != [${refs[3]}]"; fail=1; }
freed=""
for k in $(seq 1 100); do
    u=$(slots_used)
    [ -n "$u" ] && [ -z "$(echo "$u" | tr -d ' 0')" ] && { freed=$u; break; }
    sleep 0.05
done
t_freed=$(date +%s.%N)
ntok=$(tr ',' '\n' < "$WORK/long.txt" | grep -c '[0-9]')
echo "  the disconnected client had received $ntok of 1000 tokens; slots freed $(awk "BEGIN{printf \"%.2f\", $t_freed - $t_kill}") s after the kill"
[ "$ntok" -lt 1000 ] || { echo "  FAIL: the long request finished before the disconnect: nothing was cancelled"; fail=1; }
if [ -n "$freed" ]; then echo "  ok   after the disconnect: slots used per worker: $freed"; else
    echo "  FAIL: slots still used after the client left: $(slots_used)"; fail=1; fi
BG=()

# 2b. Ctrl-C on the client cancels the call explicitly (a Cancel frame): CANCELLED (exit 1), slots freed
"$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "9,8,7" --max-tokens 1000 --ignore-eos > "$WORK/cancel.out" 2>"$WORK/cancel.txt" &
cancel_pid=$!
BG+=($cancel_pid)
busy=""
for k in $(seq 1 100); do
    u=$(slots_used)
    case " $u " in *" 0 "*) ;; *) busy=$u; break ;; esac
    sleep 0.05
done
kill -INT "$cancel_pid"
wait_pid "$cancel_pid"
rc=$?
BG=()
freed=""
for k in $(seq 1 100); do
    u=$(slots_used)
    [ -n "$u" ] && [ -z "$(echo "$u" | tr -d ' 0')" ] && { freed=$u; break; }
    sleep 0.05
done
if [ -n "$busy" ] && [ $rc = 1 ] && [ -n "$freed" ] && grep -q "CANCELLED" "$WORK/cancel.txt"; then
    echo "  ok   cancel: slots $busy while running, exit code 1 ($(grep CANCELLED "$WORK/cancel.txt")), then slots $freed"
else
    echo "  FAIL cancel: slots while running '$busy', exit code $rc, slots after '$(slots_used)'"; fail=1
fi

# 3. deadline
TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "1,2,3" --max-tokens 900 --ignore-eos --deadline-ms 200 \
    >/dev/null 2>"$WORK/deadline.txt"
rc=$?
[ $rc = 4 ] && echo "  ok   deadline: exit code 4 ($(tail -1 "$WORK/deadline.txt"))" || { echo "  FAIL deadline: exit code $rc"; fail=1; }

# 4. peak RSS per worker against weights + KV + 64 MiB
sleep 0.6 # one heartbeat brings fresh figures
health_json | /usr/bin/python3 -c '
import json, sys
bad = 0
for n in json.load(sys.stdin)["nodes"]:
    limit = n["weight_bytes"] + n["kv_bytes"] + 64 * 2**20
    ok = 0 < n["peak_rss"] < limit
    bad |= not ok
    print("  %s   worker %d layers [%d,%d): peak RSS %.1f MiB, weights %.1f MiB + KV %.1f MiB + 64 MiB = %.1f MiB"
          % ("ok  " if ok else "FAIL", n["id"], n["layer_begin"], n["layer_end"], n["peak_rss"] / 2**20,
             n["weight_bytes"] / 2**20, n["kv_bytes"] / 2**20, limit / 2**20))
sys.exit(bad)' || fail=1

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_concurrent: all passed" || echo "test_cluster_concurrent: FAILED"
exit $fail
