#!/usr/bin/env bash
# mpi-cluster.sh - the cluster as one MPI job: rank 0 coordinator, ranks 1..N-1 workers.
#
#   deploy/mpi-cluster.sh --model FILE [--np N] [--hostfile FILE] [--build DIR] [-- baton-mpi options]
#
# Runs, in the foreground:
#   mpirun -np N [--hostfile FILE] --bind-to none BUILD/tools/baton-mpi --model FILE --listen 0.0.0.0:7000 ...
# Clients connect to rank 0's machine on port 7000 (`baton generate --server HOST:7000 ...`).
# Stop the job with SIGTERM to the baton-coord process (rank 0): the coordinator
# closes its MPI connections, every worker exits, mpirun exits 0. Ctrl-C here
# also stops every rank cleanly, but mpirun, being signalled, then exits 1.
# Extra options after -- go to baton-mpi: coordinator options (--slots, --ctx,
# --cluster-id ...) and --worker-OPTION VALUE for the workers (--worker-threads 8).
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BATON_BUILD:-$here/../build}
model="" np=3 hostfile=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --np) np="$2"; shift 2 ;;
        --hostfile) hostfile="$2"; shift 2 ;;
        --build) BIN="$2"; shift 2 ;;
        --help|-h) sed -n '2,13p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) echo "mpi-cluster.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "mpi-cluster.sh: --model FILE is required" >&2; exit 2; }
args=(-np "$np" --bind-to none)
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)
exec mpirun "${args[@]}" "$BIN/tools/baton-mpi" --model "$model" --listen 0.0.0.0:7000 "$@"
