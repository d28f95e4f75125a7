#!/usr/bin/env bash
# test_deploy_netns_pool.sh - deploy/netns-pool.sh, a multi-host pool on one machine
# (root: network namespaces). 1) A coordinator and 3 workers, each worker in its own
# namespace at its own address (10.77.0.2-4, inside namespaces this script makes),
# links limited to 1 Gbit/s (tbf), serve a request with baton-run's tokens; the
# script exits 0 and no namespace or process of it is left. 2) The same interrupted
# with SIGINT while a long generation streams (links at 1 Mbit/s to keep it going):
# it exits 130 within seconds and again leaves no namespace or process.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin deploy-netns-pool 15
[ "$(id -u)" = 0 ] || { bad "needs root (network namespaces)"; exit 1; }
SUFFIX=${WORK##*.}
MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" > /dev/null 2>&1 || { bad "mkmodel"; exit 1; }
want=$(T "$BIN/tools/baton-run" --model "$MODEL" --threads 1 --tokens 5,3,11 --max-tokens 24 --json | json_tokens)
POOL=$SRC/deploy/netns-pool.sh
test_on_exit() { # if the script under test failed to clean up, do it here (only its namespaces)
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep "^baton-np$SUFFIX"); do
        for p in $(ip netns pids "$ns"); do kill -KILL "$p"; done
        ip netns del "$ns"
    done
}
# leftovers NAME LOG: "" if no namespace NAME-* and no process of the pool's config remain
leftovers() {
    local conf ns
    conf=$(sed -n 's/.*(config \(.*pool\.conf\)).*/\1/p' "$2" | head -1)
    ns=$(ip netns list | awk '{print $1}' | grep "^$1-" | tr '\n' ' ')
    [ -n "$ns" ] && echo "namespaces: $ns"
    [ -n "$conf" ] && pgrep -f "$conf" > /dev/null && echo "processes: $(pgrep -af "$conf")"
    [ -n "$conf" ] || echo "(no config path in the log)"
}

# 1) serve a request
out=$(T bash "$POOL" --build "$BIN" --model "$MODEL" --workers 3 --rate 1gbit --name "baton-np$SUFFIX-a" --run \
    '$BIN/tools/baton generate --server $BATON_SERVER --tokens 5,3,11 --max-tokens 24 --ignore-eos --json;
     $BIN/tools/batonctl plan --server $BATON_SERVER --json' 2> "$WORK/pool-a.log")
rc=$?
got=$(echo "$out" | head -1 | json_tokens 2>/dev/null)
[ $rc = 0 ] && [ -n "$got" ] && [ "$got" = "$want" ] && ok "3 workers in 3 namespaces serve baton-run's tokens" ||
    bad "pool run: exit $rc, tokens '$got', want '$want': $(tail -n 5 "$WORK/pool-a.log")"
addrs=$(echo "$out" | sed -n '2,$p' | jget '" ".join(sorted(n["address"].split(":")[0] for n in d["stages"]))' 2>/dev/null)
[ "$addrs" = "10.77.0.2 10.77.0.3 10.77.0.4" ] && ok "one stage per host (in join order): $addrs" || bad "stage addresses: '$addrs'"
left=$(leftovers "baton-np$SUFFIX-a" "$WORK/pool-a.log")
[ -z "$left" ] && ok "nothing left behind after the run" || bad "left behind: $left"

# 2) SIGINT mid-generation (job control on: a background job must not ignore SIGINT, as in a terminal)
set -m
bash "$POOL" --build "$BIN" --model "$MODEL" --workers 3 --rate 1mbit --name "baton-np$SUFFIX-b" --run \
    '$BIN/tools/baton generate --server $BATON_SERVER --tokens 5,3,11 --max-tokens 3000 --ignore-eos --json' \
    > "$WORK/pool-b.out" 2> "$WORK/pool-b.log" &
pid=$!
set +m
HUB=baton-np$SUFFIX-b-hub
mid=0
for _ in $(seq 1 600); do
    n=$(ip netns exec "$HUB" timeout 5 "$BIN/tools/batonctl" status --json --server 10.77.0.1:7000 2>/dev/null |
        jget 'd["tokens_generated"] if d["active"] == 1 else 0' 2>/dev/null)
    [ -n "$n" ] && [ "$n" -ge 20 ] && { mid=1; break; }
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
[ $mid = 1 ] && ok "the long generation streams ($n tokens so far)" || bad "the generation did not get going"
t0=$(date +%s.%N)
kill -INT $pid
wait_pid $pid 30
rc=$?
dt=$($PY -c "print('%.1f' % ($(date +%s.%N) - $t0))")
[ $rc = 130 ] && ok "SIGINT: exit 130 after $dt s" || bad "SIGINT: exit $rc after $dt s"
ntok=$(json_tokens < "$WORK/pool-b.out" 2>/dev/null | tr ',' '\n' | wc -l)
[ "$ntok" -lt 3000 ] || bad "the generation finished before the interrupt ($ntok tokens)"
left=$(leftovers "baton-np$SUFFIX-b" "$WORK/pool-b.log")
[ -z "$left" ] && ok "nothing left behind after SIGINT" || bad "left behind after SIGINT: $left"
for f in "$WORK"/pool-*.log; do grep -q -E "ERROR: AddressSanitizer|runtime error:" "$f" && bad "sanitizer report in $f"; done
[ $fail = 0 ] && echo "test_deploy_netns_pool: all passed" || echo "test_deploy_netns_pool: FAILED"
exit $fail
