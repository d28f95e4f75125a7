#!/usr/bin/env bash
# test_cluster_greedy.sh - a cluster of 1, 2, 3 and 4 workers on loopback gives,
# token for token, what baton-run gives in one process: greedy decoding of
# several prompts, one longer than a prefill chunk (so the prompt crosses the
# pipeline in several frames). Seeded sampling gives the same tokens whatever
# the number of workers. Every process started here is stopped on exit.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin greedy

MODEL=$WORK/tiny8.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 8 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
MAXTOK=12
long=$(seq -s, 3 2 201)  # 100 tokens: two chunks of 64 and 36
prompts=("1,2,3" "17" "$long" "300,42,42,7,511,0")

refs=()
for p in "${prompts[@]}"; do
    r=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens $MAXTOK --json | json_tokens) || { echo "FAIL: baton-run"; exit 1; }
    refs+=("$r")
done
echo "reference (baton-run): ${#refs[@]} prompts, e.g. [${refs[0]}]"

# seeded sampling: the single-process runner is the reference too
seeded_first=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 1,2,3 --max-tokens $MAXTOK \
    --temperature 0.9 --top-k 40 --seed 1234 --json | json_tokens) || { echo "FAIL: baton-run (seeded)"; exit 1; }
greedy_123=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 1,2,3 --max-tokens $MAXTOK --json | json_tokens)
echo "reference seeded sampling (baton-run): [$seeded_first]"
[ -n "$seeded_first" ] && [ "$seeded_first" != "$greedy_123" ] || { echo "FAIL: seeded sampling is empty or equals greedy"; fail=1; }
for n in 1 2 3 4; do
    cluster_start "$MODEL" "$n" --ctx 512 --slots 4 --chunk 64 || { fail=1; break; }
    cluster_wait_serving 60 || { fail=1; cluster_stop; break; }
    stages=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep -c 'layers \[')
    plan=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | sed -n 's/.*layers \(\[[0-9]*,[0-9]*)\).*/\1/p' | tr '\n' ' ')
    echo "$n worker(s): plan $plan"
    [ "$stages" = "$n" ] || { echo "FAIL: $n workers but $stages in the health report"; fail=1; }
    for i in "${!prompts[@]}"; do
        got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${prompts[$i]}" --max-tokens $MAXTOK \
              --ignore-eos --json | json_tokens)
        if [ "$got" = "${refs[$i]}" ]; then
            echo "  ok   prompt $i ($(echo "${prompts[$i]}" | tr ',' '\n' | wc -l) tokens): [$got]"
        else
            echo "  FAIL prompt $i: cluster [$got] != baton-run [${refs[$i]}]"
            fail=1
        fi
    done
    s=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "1,2,3" --max-tokens $MAXTOK --ignore-eos \
        --temperature 0.9 --top-k 40 --seed 1234 --json | json_tokens)
    if [ "$s" = "$seeded_first" ]; then
        echo "  ok   seeded sampling equal to baton-run"
    else
        echo "  FAIL seeded sampling [$s] != baton-run [$seeded_first]"
        fail=1
    fi
    # a bad request ends with INVALID_ARGUMENT (exit code 3) and the cluster keeps serving
    TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "99999" --max-tokens 2 >/dev/null 2>&1
    rc=$?
    [ $rc = 3 ] || { echo "  FAIL: out-of-vocabulary token gave exit code $rc, expected 3"; fail=1; }
    [ $fail = 0 ] || break
    cluster_stop
    cluster_check_logs || { fail=1; break; }
done

[ $fail = 0 ] && echo "test_cluster_greedy: all passed" || echo "test_cluster_greedy: FAILED"
exit $fail
