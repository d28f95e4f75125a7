#!/usr/bin/env bash
# netns-pool.sh - a multi-host Baton pool on one machine: each worker on its own
# "host" (a network namespace with its own address), all joined by a bridge, with
# optional delay and bandwidth per link (tc netem) to play 1 GbE or Wi-Fi. Root only.
#
#   deploy/netns-pool.sh --model FILE [--workers N] [--threads T] [--delay-ms LIST] [--rate LIST]
#                        [--build DIR] [--name NAME] [--worker-opts 'OPTS'] [--run 'COMMAND']
#                        [-- coordinator options]
#
# The coordinator runs in NAME-hub at 10.77.0.1:7000, worker K in NAME-wK at
# 10.77.0.(K+1) (NAME: baton-pool-PID). Both read one config file the script writes
# (WORKDIR/pool.conf: [common], [coordinator], [worker]); per-host flags override it.
# --delay-ms and --rate are comma lists, one per worker, the last repeated
# ("1" = 1 ms; "1gbit", "54mbit"): what worker K sends is delayed/limited.
# Once the plan serves: with --run, COMMAND runs in the hub (bash -c, with
# BATON_SERVER set and BIN the build folder) and its status is the script's;
# without, it prints how to reach the pool and waits. On exit, Ctrl-C or SIGTERM
# every process and namespace it made is removed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BATON_BUILD:-$here/../build}
model="" n=3 threads=1 delays="" rates="" name="baton-pool-$$" run="" wopts=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --workers) n="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --delay-ms) delays="$2"; shift 2 ;;
        --rate) rates="$2"; shift 2 ;;
        --build) BIN="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --worker-opts) wopts="$2"; shift 2 ;;
        --run) run="$2"; shift 2 ;;
        --help|-h) sed -n '2,19p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) echo "netns-pool.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "netns-pool.sh: --model FILE is required" >&2; exit 2; }
model=$(realpath "$model")
[ -x "$BIN/coordinator/baton-coord" ] || { echo "netns-pool.sh: no baton-coord under $BIN (use --build DIR)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "netns-pool.sh: needs root (network namespaces)" >&2; exit 2; }
# shellcheck source=netns-lib.sh
. "$here/netns-lib.sh"

DIR=$(mktemp -d /tmp/baton-pool.XXXXXX)
cleanup() {
    trap - EXIT INT TERM
    netns_destroy
    echo "netns-pool.sh: stopped; namespaces removed (logs in $DIR)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ADDR=10.77.0.1:7000
cat > "$DIR/pool.conf" <<CONF
# written by netns-pool.sh: the pool's one config file (baton-coord/baton-worker --config)
[common]
max-frame = 256M
[coordinator]
listen = $ADDR
model = $model
workers = $n
[worker]
coordinator = $ADDR
model = $model
threads = $threads
CONF
netns_network "$name" "$n" "$delays" "$rates" || { echo "netns-pool.sh: cannot build the network" >&2; exit 1; }
netns_bg "$NETNS_HUB" "$DIR/coord.log" "$BIN/coordinator/baton-coord" --config "$DIR/pool.conf" "$@"
for k in $(seq 1 "$n"); do
    # shellcheck disable=SC2086 # word splitting of --worker-opts is meant
    netns_bg "${NETNS_W[$k]}" "$DIR/worker-$k.log" "$BIN/worker/baton-worker" --config "$DIR/pool.conf" \
        --listen "${NETNS_IP[$k]}:7001" $wopts
    sleep 0.2 # join in order: worker 1 is the first stage
done
serving=0
until=$(($(date +%s) + ${NETNS_POOL_WAIT_S:-120}))
while [ "$(date +%s)" -lt $until ]; do
    if ip netns exec "$NETNS_HUB" timeout 10 "$BIN/tools/baton" health --server "$ADDR" --json 2>/dev/null |
        grep -q '"serving": *true'; then serving=1; break; fi
    kill -0 "${NETNS_PIDS[0]}" 2>/dev/null || break
    sleep 0.1
done
if [ $serving = 0 ]; then
    echo "netns-pool.sh: the pool did not start serving; logs:" >&2
    tail -n 5 "$DIR"/*.log >&2
    exit 1
fi
echo "netns-pool.sh: $n worker(s) serving at $ADDR in namespace $NETNS_HUB (config $DIR/pool.conf)" >&2
if [ -n "$run" ]; then
    ip netns exec "$NETNS_HUB" env BATON_SERVER="$ADDR" BIN="$BIN" bash -c "$run" &
    wait $!
    exit $?
fi
cat <<USE
  ip netns exec $NETNS_HUB $BIN/tools/baton generate --server $ADDR --prompt "Hello" --max-tokens 32
  ip netns exec $NETNS_HUB $BIN/tools/batonctl plan --server $ADDR
Press Ctrl-C to stop.
USE
while kill -0 "${NETNS_PIDS[0]}" 2>/dev/null; do sleep 1 & wait $!; done
echo "netns-pool.sh: the coordinator exited" >&2
exit 1
