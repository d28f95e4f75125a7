#!/usr/bin/env bash
# test_cluster_long_prompt.sh - a 12,000-token prompt (4,000 under the
# sanitizers) on a 3-worker cluster: its greedy tokens equal baton-run's, and two
# short streams started beside it keep producing tokens while it is prefilled in
# chunks (at least 5 tokens each before its first token; their longest
# inter-token gaps are printed).
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin long_prompt 20
N=12000
[ "${BATON_SANITIZE:-}" = ON ] && N=4000
MODEL=$WORK/long.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 3 --type q8_0 --ctx 16384 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
PROMPT=$($PY -c "print(','.join(str((i * 7919 + 13) % 500) for i in range($N)))")
T_TIMEOUT=600 T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$PROMPT" --max-tokens 8 --ctx $((N + 64)) --json \
    > "$WORK/ref.json" || { echo "FAIL: baton-run"; exit 1; }
ref=$(json_tokens < "$WORK/ref.json")
short_ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7 --max-tokens 40 --json | json_tokens)
cluster_start "$MODEL" 3 --ctx $((N + 64)) --slots 3 || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }

RAW() { timeout 600 "$PY" "$SRC/tests/rawpeer.py" generate "$CLUSTER_ADDR" "$@"; }
t0=$(date +%s%N)
RAW --tokens "$PROMPT" --max-tokens 8 > "$WORK/long.out" &
long=$!
sleep 0.3
RAW --tokens 5,6,7 --max-tokens 40 > "$WORK/s1.out" &
s1=$!
RAW --tokens 5,6,7 --max-tokens 40 > "$WORK/s2.out" &
s2=$!
wait_pid $s1 300; wait_pid $s2 300
wait_pid $long 600
t_long=$(( ($(date +%s%N) - t0) / 1000000 ))
for s in s1 s2; do
    out=$(cat "$WORK/$s.out")
    got=${out##*ids=}
    gap=$(echo "$out" | sed -n 's/.*max_gap_ms=\([0-9]*\).*/\1/p')
    if [ "${out%% *}" = 0 ] && [ "$got" = "$short_ref" ]; then ok "short stream $s: 40 tokens equal baton-run's, longest gap between tokens $gap ms"
    else bad "short stream $s: '$(echo "$out" | cut -c1-120)'"; fi
done
long_first=$(sed -n 's/.* times_ms=\([0-9]*\).*/\1/p' "$WORK/long.out")
for s in s1 s2; do
    before=$(sed -n 's/.* times_ms=\([0-9,]*\) .*/\1/p' "$WORK/$s.out" | tr ',' '\n' | awk -v t="${long_first:-0}" '$1 < t' | wc -l)
    [ "$before" -ge 5 ] && ok "short stream $s: $before of its tokens arrived while the $N-token prompt was being prefilled" \
        || bad "short stream $s: $before tokens before the long request's first token"
done
out=$(cat "$WORK/long.out")
if [ "${out%% *}" = 0 ] && [ "${out##*ids=}" = "$ref" ]; then ok "$N-token prompt through 3 workers in $t_long ms: baton-run's 8 tokens"
else bad "$N-token prompt: '$(echo "$out" | cut -c1-160)' vs [$ref]"; fi

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_long_prompt: all passed" || echo "test_cluster_long_prompt: FAILED"
exit $fail
