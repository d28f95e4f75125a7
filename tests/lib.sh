# lib.sh - the common start of the cluster shell tests (sourced, not a test).
#
#   . "$BATON_SRC/tests/lib.sh"
#   test_begin NAME [LOG_LINES]    # WORK=/tmp/baton-test-NAME.XXXXXX, CLUSTER_DIR=$WORK,
#                                  # fail=0, and an EXIT trap that calls test_on_exit (if
#                                  # the test defines one), stops the cluster, prints the
#                                  # last LOG_LINES (15) of every log when fail != 0 and
#                                  # removes WORK
#   T CMD...                       # CMD with a timeout of $T_TIMEOUT (60) seconds
#   TC CMD...                      # a client call (baton, batonctl) with a timeout of $TC_TIMEOUT
#                                  # (20 s, 80 under sanitizers): a request that a scheduler bug
#                                  # leaves hanging fails its test in seconds, not at ctest's 900 s
#   wait_for TIMEOUT CMD...        # CMD every 0.1 s until it succeeds: 0, or 1 after TIMEOUT seconds
#   wait_pid PID [TIMEOUT]         # wait for a background job at most TIMEOUT ($TC_TIMEOUT) seconds:
#                                  # its exit status, or 124 after SIGKILL at the timeout (for a
#                                  # client that must be its own $! - killed or interrupted by the test)
#   ... | json_tokens              # "1,2,3" from the "tokens" of a JSON object
#   ... | jget 'PYTHON EXPR on d'  # a value from the JSON object d read from stdin
#   ok TEXT / bad TEXT             # a result line; bad also sets fail=1
#
# BIN and SRC come from BATON_BUILD and BATON_SRC (set by ctest), and
# deploy/cluster-lib.sh is sourced for cluster_start/cluster_stop.
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
SRC=${BATON_SRC:?set BATON_SRC to the source folder}
. "$SRC/deploy/cluster-lib.sh"
PY=/usr/bin/python3
T_TIMEOUT=${T_TIMEOUT:-60}

TC_TIMEOUT=${TC_TIMEOUT:-$([ "${BATON_SANITIZE:-}" = ON ] && echo 80 || echo 20)}

T() { timeout "$T_TIMEOUT" "$@"; }
TC() { timeout "$TC_TIMEOUT" "$@"; }
wait_for() {
    local t=$(($1 * 10)) i
    shift
    for ((i = 0; i < t; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
wait_pid() {
    local pid=$1 t=$((${2:-$TC_TIMEOUT} * 10)) i
    for ((i = 0; i < t; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "  (pid $pid still running after ${2:-$TC_TIMEOUT} s: killed)"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 124
    fi
    wait "$pid"
}
json_tokens() { $PY -c 'import json,sys; d=json.loads(sys.stdin.read()); print(",".join(map(str,d["tokens"])))'; }
jget() { $PY -c "import json,sys; d=json.loads(sys.stdin.read()); print($1)"; }
ok() { echo "  ok   $*"; }
bad() {
    echo "  FAIL $*"
    fail=1
}

test_begin() {
    WORK=$(mktemp -d "/tmp/baton-test-$1.XXXXXX")
    CLUSTER_DIR=$WORK
    TEST_LOG_LINES=${2:-15}
    fail=0
    trap test_end EXIT
}

test_end() {
    if declare -F test_on_exit >/dev/null; then test_on_exit; fi
    cluster_stop
    [ "$fail" = 0 ] || tail -n "$TEST_LOG_LINES" "$WORK"/*.log
    rm -rf "$WORK"
}
