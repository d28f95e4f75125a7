#!/usr/bin/env bash
# tools/soak.sh [MINUTES] [KILL_EVERY_S] [STREAMS]: the soak (README "Hardening").
# A 3-worker loopback cluster of the 6-layer tiny model (release build) serves
# baton-bench load (STREAMS, default 64, with 10% cancelled and 10% with
# deadlines) for MINUTES (default 15) while, every KILL_EVERY_S seconds (default
# 180), one worker (in turn) is killed with SIGKILL and started again at once.
# Beside the load, greedy requests run one after another and each one's tokens
# must equal baton-run's for the same prompt. Prints each kill's recovery time
# (from the kill to the first greedy token after it, and to `health` serving
# again), the load's figures and the greedy comparison; exits 1 on a mismatch,
# a failed greedy request, or a load failure.
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-15} every=${2:-180} streams=${3:-64}
BIN=$PWD/build/test-release
SRC=$PWD
. deploy/cluster-lib.sh
CLUSTER_DIR=$(mktemp -d /tmp/baton-soak.XXXXXX)
trap 'cluster_stop' EXIT
model=$CLUSTER_DIR/tiny6.gguf
"$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$model" >/dev/null
WORKER_OPTS="--speed 0.01" cluster_start "$model" 3 --ctx 512 --slots $((streams + 8)) || exit 1
cluster_wait_serving 60 || exit 1
echo "soak: cluster at $CLUSTER_ADDR, logs in $CLUSTER_DIR; $minutes min, a worker killed every $every s"
prompts=("5,6,7,8" "11,12,13,14,15,16,17,18,19,20" "100,200,300" "42")
refs=()
for p in "${prompts[@]}"; do
  refs+=("$("$BIN/tools/baton-run" --model "$model" --threads 1 --tokens "$p" --max-tokens 24 --json |
    /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))')")
done
"$BIN/tools/baton-bench" load --addr "$CLUSTER_ADDR" --streams "$streams" --seconds $((minutes * 60)) \
  --warmup 30 > "$CLUSTER_DIR/load.txt" 2>&1 &
load_pid=$!
end=$(($(date +%s) + minutes * 60))
next_kill=$(($(date +%s) + every))
victim=0 greedy=0 mismatch=0 failed=0
kill_ms=0
now_ms() { date +%s%3N; }
while (($(date +%s) < end)); do
  if (($(date +%s) >= next_kill)); then
    idx=$((victim % 3)); victim=$((victim + 1))
    pid=${CLUSTER_WORKER_PIDS[$idx]}
    kill -KILL "$pid" 2>/dev/null
    kill_ms=$(now_ms)
    "$BIN/worker/baton-worker" --coordinator "$CLUSTER_ADDR" --model "$model" --threads 1 --speed 0.01 \
      >> "$CLUSTER_DIR/worker-$((idx + 1)).log" 2>&1 &
    CLUSTER_WORKER_PIDS[$idx]=$!
    CLUSTER_PIDS+=($!)
    echo "soak: $(date -u +%T) killed worker $((idx + 1)) (pid $pid), restarted as pid $!"
    for i in $(seq 1 600); do
      if timeout 10 "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json 2>/dev/null | grep -q '"serving": *true'; then
        echo "soak:   serving again $(($(now_ms) - kill_ms)) ms after the kill"
        break
      fi
      sleep 0.05
    done
    next_kill=$((next_kill + every))
  fi
  k=$((greedy % ${#prompts[@]}))
  out=$(timeout 120 "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$k]}" --max-tokens 24 \
    --ignore-eos --json 2>&1)
  greedy=$((greedy + 1))
  toks=$(echo "$out" | /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))' 2>/dev/null)
  if [[ -z $toks ]]; then failed=$((failed + 1)); echo "soak: greedy request failed: $(echo "$out" | tail -1)"
  elif [[ $toks != "${refs[$k]}" ]]; then mismatch=$((mismatch + 1)); echo "soak: MISMATCH prompt ${prompts[$k]}: $toks vs ${refs[$k]}"
  elif ((kill_ms)); then echo "soak:   first greedy request after the kill done $(($(now_ms) - kill_ms)) ms after it"; kill_ms=0
  fi
done
wait $load_pid
load_rc=$?
grep -v "^baton-" "$CLUSTER_DIR/load.txt"
echo "soak: $greedy greedy requests: $((greedy - mismatch - failed)) equal to baton-run, $mismatch different, $failed failed; load exit $load_rc"
((mismatch == 0 && failed == 0 && load_rc == 0))
