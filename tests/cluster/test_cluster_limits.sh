#!/usr/bin/env bash
# test_cluster_limits.sh - the coordinator's admission limits, each status proved
# with rawpeer.py (a client from the wire format). The coordinator waits for a
# worker that never comes, so every admitted request stays queued and holds its
# place; --ctx 512 --max-requests 4 --max-prompt-memory 2000
# --max-conn-prompt-memory 1000 (4 bytes a prompt token):
#  1. prompt + max tokens beyond the context, and max tokens alone beyond it:
#     OUT_OF_RANGE;
#  2. one connection, three calls of 100 tokens: two are queued (800 bytes), the
#     third would hold 1200 bytes on that connection: RESOURCE_EXHAUSTED naming
#     --max-conn-prompt-memory;
#  3. a second connection, 200 tokens: queued (1600 bytes in all); a third, 150
#     tokens: 2200 > 2000: RESOURCE_EXHAUSTED naming --max-prompt-memory;
#  4. one token: queued (4 requests); one more: RESOURCE_EXHAUSTED naming
#     --max-requests;
#  5. the first connection goes away (its 2 requests end): a request is queued
#     again - the limits count what is held now;
#     The same full coordinator answers the HTTP API (--http-listen, where built with
#     libh2o) with 429 and an OpenAI error object, code cluster_full;
#  6. the coordinator still answers (health).
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin limits
RAW() { TC "$PY" "$SRC/tests/rawpeer.py" "$@"; }
toks() { $PY -c "import sys; print(','.join(str(1 + i % 400) for i in range(int(sys.argv[1]))))" "$1"; }

MODEL=$WORK/tiny.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
HTTP_OPT=()
"$BIN/coordinator/baton-coord" --help 2>&1 | grep -q -- --http-listen && HTTP_OPT=(--http-listen 127.0.0.1:0)
"$BIN/coordinator/baton-coord" --listen 127.0.0.1:0 --model "$MODEL" --workers 1 --ctx 512 --max-requests 4 \
    --max-prompt-memory 2000 --max-conn-prompt-memory 1000 "${HTTP_OPT[@]}" > "$WORK/coord.log" 2>&1 &
CLUSTER_PIDS+=($!)
wait_for 20 grep -q "listening on" "$WORK/coord.log" || { bad "the coordinator did not start"; exit 1; }
ADDR=127.0.0.1:$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/coord.log" | head -1)
HELD=()
# hold CALLS... in the background: rawpeer's output goes to $WORK/$1.out
hold() {
    local name=$1; shift
    "$PY" "$SRC/tests/rawpeer.py" generate "$ADDR" "$@" > "$WORK/$name.out" 2>&1 &
    HELD+=($!)
    eval "PID_$name=$!"
}
test_on_exit() { for p in "${HELD[@]}"; do kill "$p" 2>/dev/null; done; }
expect_line() { # NAME PATTERN WHAT: waits up to 10 s for PATTERN in NAME's output
    if wait_for 10 grep -q "$2" "$WORK/$1.out"; then ok "$3: $(grep "$2" "$WORK/$1.out" | head -1)"
    else bad "$3: no '$2' in: $(cat "$WORK/$1.out")"; fi
}
queued() { # NAME WHAT: no status after 1 s
    sleep 1
    if [ -s "$WORK/$1.out" ]; then bad "$2 was not queued: $(cat "$WORK/$1.out")"; else ok "$2 queued"; fi
}

# 1. the context
out=$(RAW generate "$ADDR" --tokens "$(toks 200)" --max-tokens 400)
case $out in "11 "*"exceed the context of 512"*) ok "200 + 400 tokens: OUT_OF_RANGE" ;; *) bad "200 + 400 tokens: $out" ;; esac
out=$(RAW generate "$ADDR" --tokens 1,2,3 --max-tokens 600)
case $out in "11 "*) ok "max_tokens 600: OUT_OF_RANGE" ;; *) bad "max_tokens 600: $out" ;; esac

# 2. one connection's prompt memory
hold a --tokens "$(toks 100)" --max-tokens 4 --calls 3
expect_line a "^call=3 8 .*--max-conn-prompt-memory" "the third 100-token call on one connection"
if grep -q "^call=[12] " "$WORK/a.out"; then bad "calls 1-2 ended: $(cat "$WORK/a.out")"; else ok "calls 1-2 queued"; fi

# 3. every connection's prompt memory
hold b --tokens "$(toks 200)" --max-tokens 4 --calls 1
queued b "200 tokens on a second connection"
hold c --tokens "$(toks 150)" --max-tokens 4 --calls 1
expect_line c "^call=1 8 .*--max-prompt-memory" "150 more tokens (2200 > 2000 bytes)"

# 4. the number of requests
hold d --tokens 7 --max-tokens 4 --calls 1
queued d "the fourth request"
hold e --tokens 7 --max-tokens 4 --calls 1
expect_line e "^call=1 8 too many requests.*--max-requests" "a fifth request"
if ((${#HTTP_OPT[@]})); then
    HPORT=$(sed -n 's|.*HTTP API on http://127\.0\.0\.1:\([0-9]*\)/v1.*|\1|p' "$WORK/coord.log" | head -1)
    st=$(curl -s -o "$WORK/h429.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        "http://127.0.0.1:$HPORT/v1/completions" -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":4}')
    code=$($PY -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["message"]; print(e["code"])' \
        "$WORK/h429.json" 2>/dev/null)
    if [ "$st" = 429 ] && [ "$code" = cluster_full ]; then ok "HTTP API, full: 429 $(head -c 120 "$WORK/h429.json")"
    else bad "HTTP API, full: expected 429 cluster_full, got $st: $(head -c 300 "$WORK/h429.json")"; fi
fi

# 5. what a connection held is released when it goes
kill "$PID_a" 2>/dev/null
sleep 0.5
hold f --tokens 7 --max-tokens 4 --calls 1
queued f "a request after the first connection left"

# 6. still serving its API
if TC "$BIN/tools/baton" health --server "$ADDR" --json >/dev/null 2>&1; then ok "health answers"; else bad "health"; fi
kill -0 "${CLUSTER_PIDS[0]}" 2>/dev/null && ok "the coordinator is alive" || bad "the coordinator died"
[ "$fail" = 0 ] && echo "PASS" || echo "FAIL"
exit $fail
