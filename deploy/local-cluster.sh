#!/usr/bin/env bash
# local-cluster.sh - a coordinator and N workers on this machine (loopback).
#
#   deploy/local-cluster.sh --model FILE [--workers N] [--build DIR] [-- coordinator options]
#
# Starts everything, waits until the layer plan is ready, prints how to use the
# cluster and waits; Ctrl-C (or SIGTERM) stops every process it started.
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BATON_BUILD:-$here/../build}
model="" n=2
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --workers) n="$2"; shift 2 ;;
        --build) BIN="$2"; shift 2 ;;
        --help|-h) sed -n '2,8p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) echo "local-cluster.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "local-cluster.sh: --model FILE is required" >&2; exit 2; }
[ -x "$BIN/coordinator/baton-coord" ] || { echo "local-cluster.sh: no baton-coord under $BIN (use --build DIR)" >&2; exit 2; }
# shellcheck source=cluster-lib.sh
. "$here/cluster-lib.sh"

trap 'echo; echo "stopping the cluster"; cluster_stop; exit 0' INT TERM
trap 'cluster_stop' EXIT
cluster_start "$model" "$n" "$@" || exit 1
cluster_wait_serving 120 || exit 1
"$(cluster_bin baton)" health --server "$CLUSTER_ADDR"
cat <<EOF

Baton cluster serving on $CLUSTER_ADDR (logs in $CLUSTER_DIR)
  $(cluster_bin baton) generate --server $CLUSTER_ADDR --prompt "Hello" --max-tokens 32
  $(cluster_bin baton) generate --server $CLUSTER_ADDR --tokens 1,2,3 --max-tokens 8 --json
  $(cluster_bin baton) chat --server $CLUSTER_ADDR
  $(cluster_bin baton) health --server $CLUSTER_ADDR
Press Ctrl-C to stop.
EOF
while :; do
    sleep 1 &
    wait $!
    for p in "${CLUSTER_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "process $p exited; stopping"; exit 1; }
    done
done
