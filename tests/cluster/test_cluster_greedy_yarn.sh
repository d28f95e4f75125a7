#!/usr/bin/env bash
# test_cluster_greedy_yarn.sh - YaRN RoPE and the q8_0 KV cache on a loopback cluster:
#  1. a model whose file has qwen2.rope.scaling.* keys (YaRN, factor 4, original
#     context 32), a 100-token prompt (3x the original context): 2 workers give
#     baton-run's greedy tokens; with --kv q8_0 on the workers, baton-run --kv q8_0's;
#     `batonctl nodes` shows q8_0 KV bytes at 34/64 of f16's.
#  2. a model without the keys, YaRN switched on by baton-coord's flags: the workers
#     compute it (baton-run with the same flags gives the same tokens, and other
#     tokens than plain RoPE).
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin greedy_yarn

YARN=(--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 32)
MY=$WORK/yarn8.gguf
MP=$WORK/plain8.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 8 --type q8_0 --ctx 512 --seed 5 "${YARN[@]}" -o "$MY" >/dev/null ||
    { echo "FAIL: mkmodel (yarn)"; exit 1; }
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 8 --type q8_0 --ctx 512 --seed 5 -o "$MP" >/dev/null ||
    { echo "FAIL: mkmodel (plain)"; exit 1; }
MAXTOK=12
long=$(seq -s, 3 5 498) # 100 tokens
run() { T "$BIN/tools/baton-run" --tokens "$long" --max-tokens $MAXTOK --json "$@" | json_tokens; }
gen() { TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$long" --max-tokens $MAXTOK --ignore-eos --json | json_tokens; }
kv_bytes() { TC "$BIN/tools/batonctl" nodes --server "$CLUSTER_ADDR" --json | jget "sum(n['kv_bytes'] for n in d['nodes'])"; }

ref_y=$(run --model "$MY") || { echo "FAIL: baton-run"; exit 1; }
ref_yq8=$(run --model "$MY" --kv q8_0) || { echo "FAIL: baton-run --kv q8_0"; exit 1; }
ref_p=$(run --model "$MP") || { echo "FAIL: baton-run (plain)"; exit 1; }
ref_pflag=$(run --model "$MP" "${YARN[@]}") || { echo "FAIL: baton-run (flags)"; exit 1; }
echo "baton-run: yarn keys [$ref_y], kv q8_0 [$ref_yq8]; plain [$ref_p], plain + yarn flags [$ref_pflag]"
[ "$ref_y" = "$ref_pflag" ] && ok "the YaRN flags on a file without keys = the file with them" ||
    bad "the YaRN flags on a file without keys give [$ref_pflag], the file with the keys [$ref_y]"
[ "$ref_p" != "$ref_pflag" ] && ok "YaRN changes the tokens of this prompt" || bad "YaRN and plain RoPE give the same tokens"

# 1. keys in the file; f16 then q8_0 KV on the workers
kvb=()
for kv in f16 q8_0; do
    WORKER_OPTS="--kv $kv" cluster_start "$MY" 2 --ctx 256 --slots 2 --chunk 64 || { fail=1; break; }
    cluster_wait_serving 60 || { fail=1; cluster_stop; break; }
    got=$(gen)
    want=$([ $kv = f16 ] && echo "$ref_y" || echo "$ref_yq8")
    [ "$got" = "$want" ] && ok "yarn keys, 2 workers, --kv $kv: [$got]" || bad "yarn keys, --kv $kv: cluster [$got] != baton-run [$want]"
    kvb+=("$(kv_bytes)")
    grep -q "KV $kv" "$CLUSTER_DIR/coord.log" && ok "the workers reported KV $kv in Join" || bad "no 'KV $kv' in the coordinator's log"
    cluster_stop
    cluster_check_logs || fail=1
done
if [ ${#kvb[@]} = 2 ]; then
    ratio=$($PY -c "print('%.4f' % (${kvb[1]} / ${kvb[0]}))")
    echo "  KV bytes (batonctl nodes): f16 ${kvb[0]}, q8_0 ${kvb[1]}, ratio $ratio"
    [ "$ratio" = "0.5312" ] && ok "q8_0 KV is 34/64 of f16" || bad "q8_0/f16 KV bytes ratio $ratio, expected 0.5312"
fi

# 2. no keys in the file, YaRN from the coordinator's flags
if [ $fail = 0 ]; then
    cluster_start "$MP" 2 --ctx 256 --slots 2 --chunk 64 "${YARN[@]}" || fail=1
    if [ $fail = 0 ] && cluster_wait_serving 60; then
        got=$(gen)
        [ "$got" = "$ref_pflag" ] && ok "coordinator flags, 2 workers: [$got]" ||
            bad "coordinator flags: cluster [$got] != baton-run with the flags [$ref_pflag]"
    else
        fail=1
    fi
    cluster_stop
    cluster_check_logs || fail=1
fi

[ $fail = 0 ] && echo "test_cluster_greedy_yarn: all passed" || echo "test_cluster_greedy_yarn: FAILED"
exit $fail
