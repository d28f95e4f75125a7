#!/usr/bin/env bash
# test_http_api.sh - the OpenAI-compatible HTTP API (baton-coord --http-listen) on a
# 3-worker loopback cluster with API keys, a tiny model with Qwen's vocabulary:
#  1. OpenAI's own SDK (npm `openai`, tests/http/openai_check.js): streaming and whole
#     chat and text completions equal `baton generate` (greedy, seeded, penalties,
#     stop string, non-ASCII), usage equals `baton tokenize`'s counts;
#  2. curl: malformed JSON, wrong types, n=2, unknown model, a 10 MB body, no key, a
#     wrong key, an unknown path, a wrong method: each its status and an OpenAI error
#     object, while a normal stream running meanwhile completes, equal to baton generate;
#     /v1/models, /health, /metrics, /v1/baton/plan and the chat page at /;
#  3. a client that goes away after 5 tokens of a 500-token stream (tests/http/disconnect.py):
#     its request is cancelled and `batonctl nodes` shows its slot freed on every worker
#     within a second; one that goes away while waiting for a whole answer is cancelled too;
#  4. HTTP_SOAK_CLIENTS (32) concurrent streaming clients for HTTP_SOAK_S seconds (10; the
#     issue's 60 by hand: HTTP_SOAK_S=60): no error, and every request the clients
#     started is one the coordinator counts as ended OK.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
. "$SRC/tests/http/lib.sh"
test_begin http-api 25
BG=()
test_on_exit() { for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done; }

http_npm || { bad "npm ci of tests/http"; exit 1; }
MODEL=$WORK/baton-test.gguf
http_model "$MODEL" 12 || { bad "mkmodel"; exit 1; }
http_cluster "$MODEL" 3 --ctx 1024 --slots 40 || { bad "cluster"; exit 1; }
echo "cluster serving, HTTP API at $HTTP"
H=(-H "Authorization: Bearer $KEY")

# 1. the SDK against baton generate and baton tokenize
if timeout 300 node "$SRC/tests/http/openai_check.js" "$HTTP/v1" "$KEY" "$BIN/tools/baton" "$CLUSTER_ADDR" "$WORK"; then
    ok "openai SDK: every case equal to baton generate / baton tokenize"
else
    bad "openai SDK checks"
fi

# 2. bad requests while a normal stream runs
curl -sN "${H[@]}" "$HTTP/v1/completions" -d '{"model":"baton-test","prompt":"A long story:","max_tokens":300,
    "temperature":0,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' > "$WORK/stream.txt" &
stream_pid=$!
BG+=($stream_pid)
head -c 10000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"prompt":"/; s/$/"}/' > "$WORK/big.json"
# expect STATUS CODE_OR_- CURL_ARGS...: the status and the error object's code
expect() {
    local want=$1 code=$2
    shift 2
    local st
    st=$(curl -s -o "$WORK/resp.json" -w '%{http_code}' "$@")
    local got
    got=$($PY -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert isinstance(e["message"], str) and e["message"] and e["type"]; print(e["code"])' "$WORK/resp.json" 2>/dev/null)
    if [ "$st" = "$want" ] && [ -n "$got" ] && { [ "$code" = - ] || [ "$got" = "$code" ]; }; then
        ok "$st $got: $(head -c 110 "$WORK/resp.json")"
    else
        bad "expected $want $code, got $st: $(head -c 300 "$WORK/resp.json") (curl $*)"
    fi
}
C=(-H 'Content-Type: application/json')
expect 400 invalid_json "${H[@]}" "${C[@]}" "$HTTP/v1/chat/completions" -d '{"messages": [{"role": "user", "content": "hi"}'
expect 400 invalid_json "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '[1, 2'
expect 400 invalid_type "${H[@]}" "${C[@]}" "$HTTP/v1/chat/completions" -d '{"messages": "hi"}'
expect 400 invalid_type "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "max_tokens": "ten"}'
expect 400 invalid_type "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "temperature": true}'
expect 400 invalid_type "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "stream": "yes"}'
expect 400 invalid_value "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "top_p": 3}'
expect 400 invalid_value "${H[@]}" "${C[@]}" "$HTTP/v1/chat/completions" -d '{"messages": [{"role": "robot", "content": "hi"}]}'
expect 400 unsupported_value "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "n": 2}'
expect 400 context_length_exceeded "${H[@]}" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi", "max_tokens": 5000}'
expect 404 model_not_found "${H[@]}" "${C[@]}" "$HTTP/v1/chat/completions" -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
expect 404 model_not_found "${H[@]}" "$HTTP/v1/models/gpt-4o"
expect 413 request_too_large "${H[@]}" "${C[@]}" "$HTTP/v1/completions" --data-binary @"$WORK/big.json"
expect 401 invalid_api_key "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi"}'
expect 401 invalid_api_key -H "Authorization: Bearer wrong-key-wrong-key" "${C[@]}" "$HTTP/v1/completions" -d '{"prompt": "hi"}'
expect 401 invalid_api_key -H "Authorization: Basic $KEY" "$HTTP/v1/models"
expect 404 unknown_url "${H[@]}" "$HTTP/v2/chat"
expect 405 method_not_allowed "${H[@]}" "$HTTP/v1/chat/completions"
wait_pid $stream_pid 60
BG=()
ref=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --prompt "A long story:" --max-tokens 300 --temperature 0 \
      --ignore-eos --json)
if $PY - "$WORK/stream.txt" "$ref" <<'EOF'; then
import json, sys
events = [l[6:] for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l.startswith("data: ")]
ref = json.loads(sys.argv[2])
assert events[-1] == "[DONE]", events[-3:]
chunks = [json.loads(e) for e in events[:-1]]
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert text == ref["text"], (text[:80], ref["text"][:80])
assert chunks[-1]["usage"]["completion_tokens"] == 300 == len(ref["tokens"]), chunks[-1]
print(f"  ok   the stream that ran meanwhile: {len(chunks)} events, 300 tokens, text equal to baton generate")
EOF
    :
else
    bad "the concurrent stream (see above)"
fi

# the other endpoints
curl -s "${H[@]}" "$HTTP/v1/models" | grep -q '"id":"baton-test"' && ok "GET /v1/models" || bad "GET /v1/models"
curl -s "$HTTP/health" | grep -q '"serving":true' && ok "GET /health (no key needed)" || bad "GET /health"
curl -s "$HTTP/metrics" | grep -q '^baton_requests_total' && ok "GET /metrics" || bad "GET /metrics"
stages=$(curl -s "${H[@]}" "$HTTP/v1/baton/plan" | jget 'len([s for s in d["stages"] if s["stage"] >= 0])')
[ "${stages:-0}" -ge 1 ] && ok "GET /v1/baton/plan: $stages stage(s)" || bad "GET /v1/baton/plan: '$stages' stages"
curl -s "$HTTP/" | grep -q '/v1/chat/completions' && ok "GET / is the chat page" || bad "GET /"

# 3. a client that goes away mid-stream
SLOTS_PY='import json,sys; print(" ".join(str(n["slots_used"]) for n in json.load(sys.stdin)["nodes"] if n["stage"] >= 0))'
slots() { "${CTL[@]}" nodes --json | $PY -c "$SLOTS_PY"; }
cancelled() { curl -s "$HTTP/metrics" | sed -n 's/^baton_requests_total{status="CANCELLED"} //p'; }
# busy.sh: exit 0 when every worker of the plan reports a slot in use
printf '%q ' "${CTL[@]}" > "$WORK/busy.sh"
printf 'nodes --json | %q -c %q | grep -qvw 0\n' "$PY" "$SLOTS_PY" >> "$WORK/busy.sh"
c0=$(cancelled)
r=$(T $PY "$SRC/tests/http/disconnect.py" "${HTTP#http://}" "$KEY" 500 5 bash "$WORK/busy.sh")
echo "  disconnect.py: $r"
t_close=$(echo "$r" | jget 'd["t_close"]')
freed=""
for k in $(seq 1 40); do
    u=$(slots)
    [ -n "$u" ] && [ -z "$(echo "$u" | tr -d ' 0')" ] && { freed=$(date +%s.%N); break; }
    sleep 0.05
done
c1=$(cancelled)
if [ "$(echo "$r" | jget 'd["busy"] and not d["ended"] and d["tokens"] >= 5')" = True ] && [ -n "$freed" ] &&
   [ "$c1" = $((c0 + 1)) ]; then
    ok "after 5 tokens of 500 the client went away: request cancelled, slots $(slots) on every worker $(awk "BEGIN{printf \"%.2f\", $freed - $t_close}") s after the close"
    # (the workers report their slots with each heartbeat, once a second: 1 s + polling)
    awk "BEGIN{exit !($freed - $t_close <= 1.2)}" || bad "slots freed later than a second (+ 0.2 s of polling) after the close"
else
    bad "disconnect: $r; slots now '$(slots)'; cancelled requests $c0 -> $c1"
fi

# ... and one that goes away while waiting for a whole (not streamed) answer
active() { curl -s "${H[@]}" "$HTTP/v1/baton/plan" | jget 'd["active_requests"]'; }
running() { [ "$(active)" -ge 1 ]; }
cancelled_once_more() { [ "$(cancelled)" = $((c0 + 1)) ]; }
c0=$(cancelled)
curl -s "${H[@]}" "$HTTP/v1/completions" -d '{"prompt":"hi","max_tokens":900,"temperature":0,"ignore_eos":true}' \
    > "$WORK/whole.json" &
whole_pid=$!
BG+=($whole_pid)
wait_for 10 running || bad "the whole-answer request never became active"
kill $whole_pid 2>/dev/null
wait $whole_pid 2>/dev/null
BG=()
if wait_for 2 cancelled_once_more && [ "$(active)" = 0 ]; then
    ok "a client gone before its whole answer: request cancelled, none active"
else
    bad "whole-answer client gone: cancelled requests $c0 -> $(cancelled), $(active) active"
fi

# 4. concurrent streaming clients
ok_count() { curl -s "$HTTP/metrics" | sed -n 's/^baton_requests_total{status="OK"} //p'; }
o0=$(ok_count)
soak=$(timeout $((${HTTP_SOAK_S:-10} + 120)) node "$SRC/tests/http/soak.js" "$HTTP/v1" "$KEY" "${HTTP_SOAK_CLIENTS:-32}" "${HTTP_SOAK_S:-10}")
rc=$?
o1=$(ok_count)
echo "  soak: $soak"
done_n=$(echo "$soak" | jget 'd["completed"]' 2>/dev/null)
if [ $rc = 0 ] && [ -n "$done_n" ] && [ "$((o1 - o0))" = "$done_n" ]; then
    ok "${HTTP_SOAK_CLIENTS:-32} streaming clients for ${HTTP_SOAK_S:-10} s: $done_n requests, no error, the coordinator counted $((o1 - o0)) OK"
else
    bad "soak: exit $rc, coordinator OK count $o0 -> $o1"
fi
u=$(slots)
[ -z "$(echo "$u" | tr -d ' 0')" ] || { sleep 1.5; u=$(slots); }
[ -z "$(echo "$u" | tr -d ' 0')" ] && ok "no slot left in use: $u" || bad "slots still in use after the soak: $u"

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_http_api: all passed" || echo "test_http_api: FAILED"
exit $fail
