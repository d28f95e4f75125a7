#!/usr/bin/env bash
# test_cluster_auth.sh - access control on a loopback cluster started with a
# cluster secret, an admin token and API keys:
#  1. workers holding the secret join and the cluster serves (greedy tokens
#     equal baton-run's) to a client proving its API key;
#  2. a worker with a wrong secret and a worker with none are refused: they exit
#     with 1, the coordinator's log and theirs say why, they never get an
#     assignment and the plan still has 2 workers;
#  3. an admin connection without the token or with a wrong one is refused with
#     UNAUTHENTICATED (exit code 16); with the token it is served;
#  4. a client without a key or with a wrong key is refused (16); with a key it
#     is served;
#  5. raw garbage, a frame before the hello and a call after the hello but
#     before the proof are all refused, and no reply to the call comes back;
#  6. the secret never crosses the wire: it is absent from everything the
#     coordinator sent to a worker (seen through a recording relay).
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin auth

umask 077
head -c 32 /dev/urandom | base64 > "$WORK/secret"
head -c 32 /dev/urandom | base64 > "$WORK/wrong-secret"
head -c 32 /dev/urandom | base64 > "$WORK/admin-token"
head -c 32 /dev/urandom | base64 > "$WORK/wrong-token"
KEY=$(head -c 24 /dev/urandom | base64)
printf '# API keys\n%s\n%s\n' "$(head -c 24 /dev/urandom | base64)" "$KEY" > "$WORK/api-keys"

MODEL=$WORK/tiny4.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 4 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
ref=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens 5,6,7,8 --max-tokens 8 --json | json_tokens)

# 1. a protected cluster serves
export BATON_API_KEY=$KEY # cluster_wait_serving's health calls prove it
WORKER_OPTS="--secret $WORK/secret --speed 0.001" cluster_start "$MODEL" 2 --ctx 256 --slots 2 \
    --secret "$WORK/secret" --admin-token-file "$WORK/admin-token" --api-keys "$WORK/api-keys" || exit 1
cluster_wait_serving 60 || { fail=1; exit 1; }
grep -q "access control: workers must prove the cluster secret; admin calls need the admin token; client calls need an API key" \
    "$WORK/coord.log" && ok "the coordinator says what is protected" || bad "no access-control line in the log"
got=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 --ignore-eos --json | json_tokens)
[ "$got" = "$ref" ] && ok "workers with the secret serve: [$got]" || bad "generate: [$got] != [$ref]"

# 2. workers with a wrong secret or none: refused, never assigned
refused_worker() { # NAME LOG-PATTERN [worker options]
    local name=$1 pattern=$2 log="$WORK/$1.log" rc
    shift 2
    local before
    before=$(grep -c "refusing connection" "$WORK/coord.log")
    T "$BIN/worker/baton-worker" --coordinator "$CLUSTER_ADDR" --model "$MODEL" --threads 1 --speed 0.001 "$@" > "$log" 2>&1
    rc=$?
    local coord_line
    coord_line=$(grep "refusing connection" "$WORK/coord.log" | tail -n +$((before + 1)) | grep -- "$pattern")
    if [ $rc = 1 ] && [ -n "$coord_line" ] && grep -q "refused by .*$pattern" "$log" && ! grep -q "loaded layers" "$log"; then
        ok "$name: refused ($(echo "$coord_line" | sed 's/.*refusing/refusing/'))"
    else
        bad "$name: exit $rc, coordinator: '$coord_line', worker: $(tail -2 "$log")"
    fi
}
refused_worker "worker with a wrong secret" "failed to prove the cluster secret" --secret "$WORK/wrong-secret"
refused_worker "worker without a secret" "no cluster-secret proof"
BATON_SECRET_FILE=$WORK/wrong-secret refused_worker "worker with a wrong \$BATON_SECRET_FILE" "failed to prove the cluster secret"
n=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["workers"])')
[ "$n" = 2 ] && ok "the plan still has the 2 workers with the secret" || bad "workers after the refusals: $n"
grep -q "joined" "$WORK/coord.log" && [ "$(grep -c "worker [0-9]* joined" "$WORK/coord.log")" = 2 ] \
    && ok "no refused worker ever joined" || bad "joins: $(grep -c "joined" "$WORK/coord.log")"

# 3. admin connections
expect_refused() { # NAME PATTERN COMMAND...: exit code 16 and the pattern on stderr
    local name=$1 pattern=$2 rc
    shift 2
    "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"
    rc=$?
    if [ $rc = 16 ] && grep -q -- "$pattern" "$WORK/err.txt" && [ ! -s "$WORK/out.txt" ]; then
        ok "$name: exit 16 ($(cat "$WORK/err.txt"))"
    else
        bad "$name: exit $rc, stderr '$(cat "$WORK/err.txt")', stdout '$(head -c 200 "$WORK/out.txt")'"
    fi
    grep -q "refusing connection.*$pattern" "$WORK/coord.log" || bad "$name: not in the coordinator's log"
}
expect_refused "admin without a token" "no admin token" TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --admin
expect_refused "admin with a wrong token" "admin token does not match" \
    TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --admin-token-file "$WORK/wrong-token"
TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" --admin-token-file "$WORK/admin-token" > "$WORK/out.txt" 2>&1 \
    && grep -q "^serving" "$WORK/out.txt" && ok "admin with the token: $(head -1 "$WORK/out.txt")" \
    || bad "admin with the token: $(cat "$WORK/out.txt")"

# 4. client calls
expect_refused "client without a key" "no API key" \
    TC env -u BATON_API_KEY "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6 --max-tokens 2
expect_refused "client with a wrong key" "API key is not accepted" \
    TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6 --max-tokens 2 --api-key "not-$KEY"
got=$(TC env -u BATON_API_KEY "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens 5,6,7,8 --max-tokens 8 \
    --ignore-eos --json --api-key "$KEY" | json_tokens)
[ "$got" = "$ref" ] && ok "client with --api-key served: [$got]" || bad "client with its key: [$got]"

# 5. nothing is served before authentication: raw bytes from python
raw=$(T /usr/bin/python3 - "${CLUSTER_ADDR##*:}" <<'EOF'
import os, socket, struct, sys
port = int(sys.argv[1])
MAGIC = 0x314e5442
def frame(kind, msg=b""):
    return struct.pack("<IHHIII", MAGIC, kind, 0, 1, len(msg), 0) + msg
def replies(data):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    got = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        got += b
    s.close()
    out = []
    while len(got) >= 20:
        magic, kind, _, _, ml, pl = struct.unpack("<IHHIII", got[:20])
        msg = got[20:20 + ml]
        code = msg[1] if kind == 2 and msg[:1] == b"\x08" else 0
        out.append("%d/%d" % (kind, code))
        got = got[20 + ml + pl:]
    return " ".join(out) or "nothing"
cid = b"baton"
hello = bytes([0x08, 1, 0x10, 1, 0x1a, len(cid)]) + cid + bytes([0x42, 32]) + os.urandom(32)
print("garbage:", replies(os.urandom(64)))
print("before-hello:", replies(frame(16)))
print("before-proof:", replies(frame(1, hello) + frame(16)))
EOF
)
echo "$raw" | sed 's/^/       /'
# kind/code: 1 = Hello, 2 = CallStatus (9 FAILED_PRECONDITION, 16 UNAUTHENTICATED), 17 would be a HealthReply
echo "$raw" | grep -q "^garbage: nothing$" && grep -q "bad frame magic" "$WORK/coord.log" \
    && ok "raw garbage: closed without a byte sent back" || bad "raw garbage"
echo "$raw" | grep -q "^before-hello: 2/9$" && grep -q "expected a hello first" "$WORK/coord.log" \
    && ok "a call before the hello: refused" || bad "a call before the hello"
echo "$raw" | grep -q "^before-proof: 1/0 2/16$" && grep -q "before authentication completed" "$WORK/coord.log" \
    && ok "a call after the hello, before the proof: refused (UNAUTHENTICATED), no reply" || bad "a call before the proof"

# 6. the secret is not on the wire: a relay records what the coordinator sends
#    a third worker; the worker joins through it (so the proofs worked) and the
#    secret's bytes are nowhere in the recording
T /usr/bin/python3 - "${CLUSTER_ADDR##*:}" "$WORK/relay.port" "$WORK/relay.bytes" <<'EOF' &
import socket, sys, threading
up_port, port_file, rec = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
open(port_file + ".tmp", "w").write(str(ls.getsockname()[1])); __import__("os").rename(port_file + ".tmp", port_file)
a, _ = ls.accept()
b = socket.create_connection(("127.0.0.1", up_port))
out = open(rec, "wb")
def pump(src, dst, record):
    try:
        while True:
            d = src.recv(65536)
            if not d: break
            if record: out.write(d); out.flush()
            dst.sendall(d)
    except OSError:
        pass
    for s in (src, dst):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
t = threading.Thread(target=pump, args=(b, a, True)); t.start()
pump(a, b, True); t.join()
EOF
CLUSTER_PIDS+=($!) # cluster_stop ends the relay and the worker behind it
for i in $(seq 1 100); do [ -s "$WORK/relay.port" ] && break; sleep 0.05; done
"$BIN/worker/baton-worker" --coordinator "127.0.0.1:$(cat "$WORK/relay.port")" --model "$MODEL" --threads 1 \
    --speed 0.001 --secret "$WORK/secret" > "$WORK/worker-relay.log" 2>&1 &
CLUSTER_PIDS+=($!)
for i in $(seq 1 100); do grep -qs "^baton-worker: joined" "$WORK/worker-relay.log" && break; sleep 0.05; done
secret=$(tr -d '\n' < "$WORK/secret")
if grep -q "^baton-worker: joined" "$WORK/worker-relay.log" && [ -s "$WORK/relay.bytes" ] \
    && ! grep -qF "$secret" "$WORK/relay.bytes" && ! grep -qF "${secret:0:16}" "$WORK/relay.bytes"; then
    ok "a worker joined through a recording relay; the secret is not in the $(stat -c %s "$WORK/relay.bytes") bytes it saw"
else
    bad "relay: $(tail -2 "$WORK/worker-relay.log")"
fi

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_cluster_auth: all passed" || echo "test_cluster_auth: FAILED"
exit $fail
