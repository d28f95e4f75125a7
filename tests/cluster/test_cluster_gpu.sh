#!/usr/bin/env bash
# test_cluster_gpu.sh - a pool that mixes CPU and GPU workers (issue 16), on
# loopback, the middle worker on Vulkan (Mesa's lavapipe in CI):
#  1. its log names the device and the memory it offers (the device's), and
#     `batonctl nodes` shows which worker runs on it (DEVICE column);
#  2. a prompt longer than one prefill chunk (80 tokens, chunks of 64) gives
#     exactly baton-run's tokens, greedy and seeded (temperature 0.8), and
#     `baton-run --device vulkan` gives them too, and bit-identical logits for
#     q4_k_m, f16, bf16, q4_0 and (with YaRN RoPE) q8_0 models with f16 and
#     f32 KV caches;
#  3. a kill -9 of the GPU worker mid-generation: the coordinator re-plans
#     over the two CPU workers and replays the request, with the same tokens;
#  4. a GPU worker whose slice does not fit its device memory (the memory
#     faked small by BATON_GPU_MEMORY, a test hook) refuses the assignment
#     with a message saying how much it needs and has.
# Fails, not skips, when the build has Vulkan but no device is found.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin gpu 30
[ "${BATON_SANITIZE:-}" = ON ] &&
    export LSAN_OPTIONS="suppressions=$SRC/tests/lsan-vulkan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

"$BIN/worker/baton-worker" --device list > "$WORK/devices.txt" 2>&1 ||
    { echo "FAIL: no Vulkan device: $(cat "$WORK/devices.txt")"; exit 1; }
echo "  devices: $(head -1 "$WORK/devices.txt")"

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
PROMPT=$(seq -s, 3 82) # 80 tokens: two prefill chunks
N=12
ref_g=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$PROMPT" --max-tokens $N --json | json_tokens)
ref_s=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$PROMPT" --max-tokens $N --temperature 0.8 --seed 11 --json | json_tokens)
got=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$PROMPT" --max-tokens $N --temperature 0.8 --seed 11 --device vulkan --json | json_tokens)
[ -n "$ref_s" ] && [ "$got" = "$ref_s" ] && ok "baton-run --device vulkan, seeded: [$got]" || bad "baton-run --device vulkan: [$got] != [$ref_s]"

# the logits of every generated position, bit for bit, for the other weight
# types (q4_k_m: Q4_K and Q6_K; f16; bf16; q4_0) and both KV cache types
for spec in q4_k_m:f16 f16:f32 bf16:f16 q4_0:f32 q8_0:f16:yarn; do
    IFS=: read -r type kv rope <<< "$spec"
    extra=()
    [ "$rope" = yarn ] && extra=(--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 32)
    T "$BIN/tools/baton-mkmodel" --preset tiny --type "$type" -o "$WORK/t-$type.gguf" >/dev/null || bad "mkmodel $type"
    for dev in cpu vulkan; do
        T "$BIN/tools/baton-run" --model "$WORK/t-$type.gguf" --tokens "$PROMPT" --max-tokens 4 --kv "$kv" --device $dev \
            "${extra[@]}" --logits-out "$WORK/logits-$dev.bin" > /dev/null 2>"$WORK/run-$dev.err" || bad "baton-run $type $dev: $(tail -1 "$WORK/run-$dev.err")"
    done
    [ -s "$WORK/logits-cpu.bin" ] && cmp -s "$WORK/logits-cpu.bin" "$WORK/logits-vulkan.bin" &&
        ok "$type weights, $kv KV cache${rope:+, $rope}: the logits of all 83 positions are the CPU's, bit for bit" ||
        bad "$type weights, $kv KV cache: the GPU's logits differ from the CPU's"
done

# every worker reports the same speed, so the plan splits the 6 layers 2/2/2
# and the GPU worker holds a middle slice whatever lavapipe's speed is
WORKER_OPTS="--speed 0.001" WORKER_OPTS_2="--device vulkan" cluster_start "$MODEL" 3 --ctx 512 --slots 2 || exit 1
cluster_wait_serving 90 || { fail=1; exit 1; }
grep -q "device vulkan:0" "$WORK/worker-2.log" && ok "worker 2: $(grep -o 'device vulkan:0.*' "$WORK/worker-2.log" | head -1)" ||
    bad "worker 2 does not say it runs on vulkan:0"
plan=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | sed -n 's/.*layers \(\[[0-9]*,[0-9]*)\).*/\1/p' | tr '\n' ' ')
[ "$plan" = "[0,2) [2,4) [4,6) " ] && ok "plan $plan" || bad "plan: $plan"
# the coordinator knows where each slice runs: batonctl nodes' DEVICE column
devs=$(TC "$BIN/tools/batonctl" nodes --json --server "$CLUSTER_ADDR" | /usr/bin/python3 -c \
    "import json,sys; print(' '.join(n['device'].split(':')[0] for n in sorted(json.load(sys.stdin)['nodes'], key=lambda n: n['stage'])))")
[ "$devs" = "cpu vulkan cpu" ] && ok "batonctl nodes: devices by stage: $devs ($(TC "$BIN/tools/batonctl" nodes --server "$CLUSTER_ADDR" | grep -o 'vulkan.*' | head -1))" ||
    bad "batonctl nodes: devices by stage '$devs', expected 'cpu vulkan cpu'"
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$PROMPT" --max-tokens $N --ignore-eos --json | json_tokens)
[ -n "$ref_g" ] && [ "$got" = "$ref_g" ] && ok "greedy, CPU-GPU-CPU: [$got]" || bad "greedy: [$got] != [$ref_g]"
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$PROMPT" --max-tokens $N --ignore-eos \
    --temperature 0.8 --seed 11 --json | json_tokens)
[ "$got" = "$ref_s" ] && ok "seeded, CPU-GPU-CPU: [$got]" || bad "seeded: [$got] != [$ref_s]"

# 3. kill -9 of the GPU worker during a longer generation
LONG=120
ref_long=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$PROMPT" --max-tokens $LONG --json | json_tokens)
TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$PROMPT" --max-tokens $LONG --ignore-eos --json \
    > "$WORK/long.json" 2>"$WORK/long.err" &
long_pid=$!
for k in $(seq 1 200); do
    TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep -q "1 active" && break
    sleep 0.02
done
victim=${CLUSTER_WORKER_PIDS[1]}
{ kill -KILL "$victim"; wait "$victim"; } 2>/dev/null
wait_pid "$long_pid" 60
rc=$?
got=$(json_tokens < "$WORK/long.json" 2>/dev/null)
replayed=$(grep -c "replayed" "$WORK/coord.log")
if [ $rc = 0 ] && [ "$got" = "$ref_long" ] && [ "$replayed" -ge 1 ]; then
    ok "GPU worker killed mid-generation: replayed on the CPU workers, $LONG tokens equal baton-run's"
else
    bad "replay: exit code $rc, $(cat "$WORK/long.err"), replay logged $replayed time(s), tokens equal: $([ "$got" = "$ref_long" ] && echo yes || echo no)"
fi
cluster_stop

# 4. a slice too large for the device: refused at assignment, with the sizes
: > "$WORK/coord.log"
BATON_GPU_MEMORY=65536 WORKER_OPTS="--speed 0.001 --memory 1G --device vulkan" cluster_start "$MODEL" 1 --ctx 64 --slots 1 || exit 1
wait_for 30 grep -q "cannot take layers" "$WORK/worker-1.log"
msg=$(grep -o "cannot take layers.*" "$WORK/worker-1.log" | head -1)
echo "$msg" | grep -q "needs .* MiB of device memory .* has 0.1 MiB" && ok "too large for the device: $msg" ||
    bad "no clear refusal: '$msg'"
cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_gpu: all passed" || echo "test_cluster_gpu: FAILED"
exit $fail
