#!/usr/bin/env bash
# test_cluster_mixed.sh - a mixed-type model (q5_k_m: Q5_K, with Q6_K for attn_v
# and ffn_down in llama.cpp's use_more_bits layers and for output; the token
# embedding Q5_K) gives, token for token, what baton-run gives in one process,
# on a cluster of 3 workers on loopback, greedy, FAST precision. Every process
# started here is stopped on exit.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin mixed

MODEL=$WORK/tiny8_q5km.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 8 --type q5_k_m -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
MAXTOK=16
prompts=("1,2,3" "300,42,42,7,511,0")
refs=()
for p in "${prompts[@]}"; do
    r=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens $MAXTOK --json | json_tokens) || { echo "FAIL: baton-run"; exit 1; }
    refs+=("$r")
done
echo "reference (baton-run, q5_k_m): [${refs[0]}]"
fail=0
cluster_start "$MODEL" 3 --ctx 512 --slots 2 --chunk 64 || exit 1
cluster_wait_serving 60 || { cluster_stop; exit 1; }
for i in "${!prompts[@]}"; do
    got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$i]}" --max-tokens $MAXTOK \
          --ignore-eos --json | json_tokens)
    if [ -n "$got" ] && [ "$got" = "${refs[$i]}" ]; then
        echo "  ok   prompt $i: [$got]"
    else
        echo "  FAIL prompt $i: cluster [$got] != baton-run [${refs[$i]}]"
        fail=1
    fi
done
cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_mixed: all passed" || echo "test_cluster_mixed: FAILED"
exit $fail
