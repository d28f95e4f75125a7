# cluster-lib.sh - start and stop a Baton cluster on loopback (sourced by
# deploy/local-cluster.sh and tests/cluster/test_cluster_*.sh).
#
#   BIN=/path/to/build            # holds coordinator/baton-coord, worker/baton-worker, tools/baton
#   cluster_start MODEL N [coordinator options...]   # sets CLUSTER_ADDR, CLUSTER_DIR, CLUSTER_PIDS
#                                 # (WORKER_OPTS: every worker's extra options; WORKER_OPTS_K: worker K's,
#                                 #  e.g. WORKER_OPTS_2="--device vulkan")
#   cluster_wait_serving 60       # polls `baton health` until the plan is ready
#   cluster_stop                  # SIGTERM, then SIGKILL after 5 s, for the processes it started only
#
# Logs go to $CLUSTER_DIR/coord.log and $CLUSTER_DIR/worker-K.log.

CLUSTER_PIDS=()
CLUSTER_WORKER_PIDS=()

cluster_bin() { # name -> path
    case "$1" in
        baton-coord) echo "$BIN/coordinator/baton-coord" ;;
        baton-worker) echo "$BIN/worker/baton-worker" ;;
        *) echo "$BIN/tools/$1" ;;
    esac
}

# cluster_start MODEL N [extra coordinator options]
cluster_start() {
    local model="$1" n="$2"
    shift 2
    CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d /tmp/baton-cluster.XXXXXX)}
    : > "$CLUSTER_DIR/coord.log"
    "$(cluster_bin baton-coord)" --listen 127.0.0.1:0 --model "$model" --workers "$n" "$@" \
        > "$CLUSTER_DIR/coord.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    local coord_pid=$! port="" i
    for i in $(seq 1 100); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CLUSTER_DIR/coord.log" | head -1)
        [ -n "$port" ] && break
        kill -0 "$coord_pid" 2>/dev/null || { echo "coordinator died:"; cat "$CLUSTER_DIR/coord.log"; return 1; }
        sleep 0.05
    done
    [ -n "$port" ] || { echo "coordinator did not start"; cat "$CLUSTER_DIR/coord.log"; return 1; }
    CLUSTER_ADDR="127.0.0.1:$port"
    CLUSTER_WORKER_PIDS=()
    for i in $(seq 1 "$n"); do
        local own="WORKER_OPTS_$i"
        "$(cluster_bin baton-worker)" --coordinator "$CLUSTER_ADDR" --model "$model" --threads "${WORKER_THREADS:-1}" \
            ${WORKER_OPTS:-} ${!own:-} > "$CLUSTER_DIR/worker-$i.log" 2>&1 &
        CLUSTER_PIDS+=($!)
        CLUSTER_WORKER_PIDS+=($!)
        # join in order (worker 1 is the first stage): wait for its join before the
        # next starts - a worker that is slow to start (a GPU one opening its
        # device) would otherwise join after the next and take a later stage
        local k
        for k in $(seq 1 600); do
            [ "$(grep -c 'worker [0-9]* joined from' "$CLUSTER_DIR/coord.log")" -ge "$i" ] && break
            kill -0 "$!" 2>/dev/null || break
            sleep 0.05
        done
    done
}

# cluster_wait_serving TIMEOUT_S: 0 once `baton health` says serving.
cluster_wait_serving() {
    local t=$(( ${1:-60} * 10 )) i
    for i in $(seq 1 "$t"); do
        if timeout 10 "$(cluster_bin baton)" health --server "$CLUSTER_ADDR" --json 2>/dev/null | grep -q '"serving": *true'; then
            return 0
        fi
        sleep 0.1
    done
    echo "cluster not serving after ${1:-60} s; logs:"
    tail -n 20 "$CLUSTER_DIR"/*.log
    return 1
}

cluster_stop() {
    local p i
    # (|| true: callers may run under set -e, and these processes may be gone already)
    for p in "${CLUSTER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 1 50); do
        local alive=0
        for p in "${CLUSTER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${CLUSTER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${CLUSTER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    CLUSTER_PIDS=()
    CLUSTER_WORKER_PIDS=()
}

# cluster_check_logs: 1 (and the report) if a sanitizer complained in any log.
cluster_check_logs() {
    if grep -l -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$CLUSTER_DIR"/*.log >/dev/null 2>&1; then
        echo "FAIL: sanitizer report in the cluster logs:"
        grep -h -A20 -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$CLUSTER_DIR"/*.log | head -60
        return 1
    fi
    return 0
}
