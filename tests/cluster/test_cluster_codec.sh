#!/usr/bin/env bash
# test_cluster_codec.sh - activation codecs between workers on loopback.
#  1. Default codec (f32+lz4, lossless), 3 workers: tokens identical to baton-run
#     for a short prompt and one longer than a prefill chunk; the workers log the
#     codec each link uses.
#  2. Every other codec (--codec NAME on the workers, 2 workers): the request
#     completes with the asked number of tokens, the link uses that codec.
#  3. A sender that corrupts every 5th payload it sends (BATON_CODEC_CORRUPT_EVERY,
#     test only): the request that meets it ends with DATA_LOSS (exit code 15)
#     and a message naming the link; the receiver logs the link and step;
#     the cluster keeps serving and the next request gives baton-run's tokens.
# Every process started here is stopped on exit.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin codec
ntok() { echo "$1" | tr ',' '\n' | grep -c .; }

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
MAXTOK=12
long=$(seq -s, 5 3 301)  # 99 tokens: two chunks of 64 and 35
prompts=("1,2,3" "$long")
refs=()
for p in "${prompts[@]}"; do
    r=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens $MAXTOK --json | json_tokens) \
        || { echo "FAIL: baton-run"; exit 1; }
    refs+=("$r")
done
ref3=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 9,8,7 --max-tokens 3 --json | json_tokens)
export WORKER_THREADS=1

start() { # N [worker options]
    local n=$1
    shift
    rm -f "$WORK"/worker-*.log
    WORKER_OPTS="--speed 0.001 $*" cluster_start "$MODEL" "$n" --ctx 512 --slots 4 --chunk 64 &&
        cluster_wait_serving 60
}
uses() { # codec: 0 if every sending worker logs it
    local want="$1" logs n
    n=$(grep -l "sending activations to .* as $want\$" "$WORK"/worker-*.log | wc -l)
    logs=$(ls "$WORK"/worker-*.log | wc -l)
    [ "$n" = $((logs - 1)) ]
}

# 1. default: lossless, identical to one process
start 3 || { fail=1; exit 1; }
for i in "${!prompts[@]}"; do
    got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$i]}" --max-tokens $MAXTOK \
          --ignore-eos --json | json_tokens)
    if [ "$got" = "${refs[$i]}" ]; then
        echo "ok   default codec, prompt $i: tokens equal to baton-run [$got]"
    else
        echo "FAIL default codec, prompt $i: cluster [$got] != baton-run [${refs[$i]}]"
        fail=1
    fi
done
uses "f32+lz4" && echo "ok   both links use f32+lz4" || { echo "FAIL: the links do not log f32+lz4"; fail=1; }
cluster_stop
cluster_check_logs || fail=1

# 2. every codec runs
for codec in f32 f16 bf16 q8 f16+lz4 bf16+lz4 q8+lz4; do
    start 2 --codec "$codec" || { fail=1; break; }
    got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$long" --max-tokens $MAXTOK \
          --ignore-eos --json | json_tokens)
    rc=$?
    if [ $rc = 0 ] && [ "$(ntok "$got")" = $MAXTOK ] && uses "$codec"; then
        same=$([ "$got" = "${refs[1]}" ] && echo "equal to" || echo "differs from")
        echo "ok   --codec $codec: $MAXTOK tokens ($same f32's)"
    else
        echo "FAIL --codec $codec: exit $rc, tokens [$got]"
        fail=1
    fi
    cluster_stop
    cluster_check_logs || fail=1
done

# 3. corrupt payloads end the request with DATA_LOSS; the cluster keeps serving
export BATON_CODEC_CORRUPT_EVERY=5
started=0
start 2 && started=1 || fail=1
unset BATON_CODEC_CORRUPT_EVERY
if [ $started = 1 ]; then
    # frames 1..5 on the hop: prefill + 4 decode steps; the 5th is corrupted
    TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 1,2,3 --max-tokens $MAXTOK --ignore-eos \
        > "$WORK/out1.txt" 2> "$WORK/err1.txt"
    rc=$?
    if [ $rc = 15 ] && grep -q "activations from 127.0.0.1:[0-9]*: f32+lz4" "$WORK/err1.txt"; then
        echo "ok   corrupted payload: DATA_LOSS ($(head -c 160 "$WORK/err1.txt"))"
    else
        echo "FAIL corrupted payload: exit $rc, stderr: $(cat "$WORK/err1.txt")"
        fail=1
    fi
    grep -q "stage frame [0-9]* from 127.0.0.1:[0-9]* rejected: f32+lz4" "$WORK/worker-2.log" \
        && echo "ok   the receiver logs the link and step" || { echo "FAIL: no rejection in worker-2.log"; fail=1; }
    # frames 6..8: a 3-token request succeeds with baton-run's tokens
    got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 9,8,7 --max-tokens 3 --ignore-eos --json |
          json_tokens)
    rc=$?
    if [ $rc = 0 ] && [ "$got" = "$ref3" ]; then
        echo "ok   the next request succeeds, tokens equal to baton-run [$got]"
    else
        echo "FAIL: next request exit $rc, tokens [$got]"
        fail=1
    fi
    TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json | grep -q '"serving": *true' \
        && echo "ok   still serving" || { echo "FAIL: not serving after the corruption"; fail=1; }
    for pid in "${CLUSTER_WORKER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "FAIL: worker $pid died"; fail=1; }; done
fi
cluster_stop
cluster_check_logs || fail=1

[ $fail = 0 ] && echo "test_cluster_codec: all passed" || echo "test_cluster_codec: FAILED"
exit $fail
