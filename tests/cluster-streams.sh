# cluster-streams.sh - helpers of the cluster tests that run many greedy streams
# at once and compare each with baton-run (sourced by tests/cluster/test_cluster_admin.sh
# and tests/cluster/test_cluster_netns.sh; not a test itself).
#
#   tests/lib.sh sourced (T, jget, ok, bad), WORK set; RUN: an optional command prefix for clients (ip netns exec NS)
#   streams_setup                  # writes $MODEL (tiny, 6 layers), PROMPTS, LENS, REFS (baton-run)
#   start_streams TAG              # 8 `baton generate` in the background (CLUSTER_ADDR)
#   wait_midstream N               # until all 8 run and N more tokens were generated
#   check_streams TAG WHAT         # ok/bad: every stream exited 0 with baton-run's tokens
#   CTL ARGS...                    # batonctl ARGS --server $CLUSTER_ADDR
CTL() { TC ${RUN:-} "$BIN/tools/batonctl" "$@" --server "$CLUSTER_ADDR"; }

N_STREAMS=8
streams_setup() {
    MODEL=$WORK/tiny6.gguf
    T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
    # prompts and lengths (some long), references from baton-run
    LENS=(200 100 160 60 200 80 140 120)
    local i
    if [ "${BATON_SANITIZE:-}" = ON ]; then # 5-10x slower: shorter streams, the same checks
        for i in $(seq 0 $((N_STREAMS - 1))); do LENS[$i]=$((LENS[i] / 2)); done
    fi
    for i in $(seq 0 $((N_STREAMS - 1))); do
        PROMPTS[$i]="$((i + 5)),$((i * 7 + 3)),$((i * 13 + 11))"
        REFS[$i]=$(T "$BIN/tools/baton-run" --model "$MODEL" --threads 1 --tokens "${PROMPTS[$i]}" --max-tokens "${LENS[$i]}" --json | json_tokens)
    done
}

# start_streams TAG: runs the 8 generations in the background (pids in STREAM_PIDS)
start_streams() {
    STREAM_PIDS=()
    for i in $(seq 0 $((N_STREAMS - 1))); do
        TC ${RUN:-} "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "${PROMPTS[$i]}" --max-tokens "${LENS[$i]}" \
            --ignore-eos --json > "$WORK/$1-$i.json" 2> "$WORK/$1-$i.err" &
        STREAM_PIDS+=($!)
    done
}
# wait_midstream N: until all 8 streams run and N more tokens were generated
wait_midstream() {
    local base k s
    base=$(CTL status --json | jget 'd["tokens_generated"]')
    local until=$(( $(date +%s) + ${MIDSTREAM_S:-60} )) # a time bound: on a loaded machine 400 polls were too few
    while [ "$(date +%s)" -lt $until ]; do
        s=$(CTL status --json | jget 'str(d["active"]) + " " + str(d["tokens_generated"])')
        [ "${s% *}" = $N_STREAMS ] && [ "${s#* }" -ge $((base + $1)) ] && return 0
        sleep 0.02
    done
    echo "streams did not start"; return 1
}
# check_streams TAG WHAT: every stream exited 0 with baton-run's tokens
check_streams() {
    local i rc good=0
    for i in $(seq 0 $((N_STREAMS - 1))); do
        wait "${STREAM_PIDS[$i]}"; rc=$?
        got=$(json_tokens < "$WORK/$1-$i.json" 2>/dev/null)
        if [ $rc = 0 ] && [ "$got" = "${REFS[$i]}" ]; then good=$((good + 1)); else
            echo "    stream $i: exit $rc $(cat "$WORK/$1-$i.err"), tokens equal: $([ "$got" = "${REFS[$i]}" ] && echo yes || echo no)"; fi
    done
    [ $good = $N_STREAMS ] && ok "$2: all $N_STREAMS streams OK with baton-run's tokens" || bad "$2: $good of $N_STREAMS streams correct"
}
# node_field ID EXPR: EXPR on the node n with that id in `batonctl nodes --json`
node_field() { CTL nodes --json | jget "[$2 for n in d['nodes'] if n['id'] == $1][0]"; }

