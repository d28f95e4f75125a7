#!/usr/bin/env bash
# test_mpi.sh - the cluster under mpirun (baton-mpi: rank 0 coordinator, the
# other ranks workers, stage frames over MPI): with 3 and 5 ranks, greedy output
# equals baton-run's and a TCP cluster's, token for token, including a prompt
# longer than a prefill chunk; SIGTERM to the coordinator ends every rank and
# mpirun with exit code 0; a model missing on the worker ranks and too little
# worker memory for the model end the job with a clear error and a non-zero
# exit code, not a hang. Runs as root too (CI). Every process it starts is
# stopped on exit.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin mpi
MPI_PID=""
stop_mpi() { [ -n "$MPI_PID" ] && kill -TERM "$MPI_PID" 2>/dev/null && wait "$MPI_PID" 2>/dev/null; MPI_PID=""; }
test_on_exit() { stop_mpi; }

# OpenMPI on one machine: shared memory without the ptrace-based single copy
# (refused in containers), more ranks than cores, root allowed.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader
if [ "${BATON_SANITIZE:-}" = "ON" ] || [ "${BATON_SANITIZE:-}" = "1" ]; then
    # libmpi keeps allocations until exit that LeakSanitizer calls leaks, some in
    # components unloaded by then: the slow unwinder finds libmpi under those
    export LSAN_OPTIONS="suppressions=$SRC/tests/lsan-mpi.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
fi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
LAUNCH="$BIN/tools/baton-mpi"

MODEL=$WORK/tiny6.gguf
T "$BIN/tools/baton-mkmodel" --preset tiny --layers 6 --type q8_0 -o "$MODEL" >/dev/null || { echo "FAIL: mkmodel"; exit 1; }
MAXTOK=10
long=$(seq -s, 5 3 302)  # 100 tokens: two chunks of 64 and 36
prompts=("1,2,3" "$long" "300,42,42,7,511,0")
COPTS=(--ctx 256 --slots 4 --chunk 64)

refs=()
for p in "${prompts[@]}"; do
    r=$(T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$p" --max-tokens $MAXTOK --json | json_tokens) || { echo "FAIL: baton-run"; exit 1; }
    refs+=("$r")
done
echo "reference (baton-run): [${refs[0]}] ..."

# check_prompts ADDR LABEL: every prompt gives the reference tokens
check_prompts() {
    local i got
    for i in "${!prompts[@]}"; do
        got=$(TC "$BIN/tools/baton" generate --server "$1" --tokens "${prompts[$i]}" --max-tokens $MAXTOK \
              --ignore-eos --json | json_tokens)
        if [ "$got" = "${refs[$i]}" ]; then
            echo "  ok   $2 prompt $i ($(echo "${prompts[$i]}" | tr ',' '\n' | wc -l) tokens)"
        else
            echo "  FAIL $2 prompt $i: [$got] != baton-run [${refs[$i]}]"
            fail=1
        fi
    done
}

# TCP mode, the same prompts
cluster_start "$MODEL" 2 "${COPTS[@]}" && cluster_wait_serving 60 || { echo "FAIL: TCP cluster"; exit 1; }
check_prompts "$CLUSTER_ADDR" "TCP 2 workers"
cluster_stop
cluster_check_logs || fail=1

# mpi_start NP LOG [baton-mpi options]: starts the job in the background (MPI_PID)
mpi_start() {
    local np=$1 log=$2
    shift 2
    "${MPIRUN[@]}" -np "$np" "$LAUNCH" --model "$MODEL" --listen 127.0.0.1:0 --worker-threads 1 "$@" \
        > "$log" 2>&1 &
    MPI_PID=$!
}

# mpi_wait_exit LOG TIMEOUT_S: the job's exit code (124 if it had to be killed)
mpi_wait_exit() {
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        kill -0 "$MPI_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$MPI_PID" 2>/dev/null; then
        kill -KILL "$MPI_PID"; wait "$MPI_PID" 2>/dev/null; MPI_PID=""
        return 124
    fi
    wait "$MPI_PID"
    local rc=$?
    MPI_PID=""
    return $rc
}

for np in 3 5; do
    log=$WORK/mpi-$np.log
    mpi_start "$np" "$log" "${COPTS[@]}"
    port=""
    for i in $(seq 1 200); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$port" ] && break
        kill -0 "$MPI_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "FAIL: -np $np: the coordinator did not start"; cat "$log"; fail=1; break; }
    CLUSTER_ADDR=127.0.0.1:$port
    cluster_wait_serving 60 || { fail=1; break; }
    stages=$(TC "$BIN/tools/baton" health --server "$CLUSTER_ADDR" | grep -c 'layers \[')
    [ "$stages" = $((np - 1)) ] || { echo "FAIL: -np $np but $stages stages"; fail=1; }
    grep -q "successor mpi:[0-9]" "$log" || { echo "FAIL: -np $np: no stage sends to an MPI successor"; fail=1; }
    check_prompts "$CLUSTER_ADDR" "MPI -np $np"
    # shutdown: -np 3 by SIGTERM to the coordinator (rank 0, a child of this
    # mpirun), -np 5 by a client: `batonctl shutdown`
    if [ "$np" = 3 ]; then
        how="SIGTERM to the coordinator"
        coord=""
        for p in $(ps -o pid= --ppid "$MPI_PID"); do
            [ "$(cat /proc/$p/comm 2>/dev/null)" = baton-coord ] && coord=$p
        done
        [ -n "$coord" ] || { echo "FAIL: -np $np: no baton-coord child of mpirun"; fail=1; break; }
        kill -TERM "$coord"
    else
        how="batonctl shutdown"
        TC "$BIN/tools/batonctl" shutdown --server "$CLUSTER_ADDR" >/dev/null || { echo "FAIL: batonctl shutdown"; fail=1; }
    fi
    mpi_wait_exit "$log" 30
    rc=$?
    # SIGTERM: the workers see their coordinator go; shutdown: it tells them to leave first
    if [ $rc = 0 ] && [ "$(grep -c -E 'coordinator connection lost|asks this worker to leave' "$log")" = $((np - 1)) ]; then
        echo "  ok   MPI -np $np: $how ended all $np ranks, exit code 0"
    else
        echo "  FAIL MPI -np $np: shutdown exit code $rc"; tail -n 20 "$log"; fail=1
    fi
    grep -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$log" && { echo "FAIL: sanitizer report"; fail=1; }
    [ $fail = 0 ] || break
done

# a rank that dies ends the whole job (MPI's default), non-zero, without a hang
if [ $fail = 0 ]; then
    log=$WORK/die.log
    mpi_start 3 "$log" "${COPTS[@]}"
    for i in $(seq 1 600); do grep -q "serving" "$log" && break; kill -0 "$MPI_PID" 2>/dev/null || break; sleep 0.1; done
    victim=""
    for p in $(ps -o pid= --ppid "$MPI_PID"); do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = baton-worker ] && victim=$p
    done
    [ -n "$victim" ] && kill -KILL "$victim"
    mpi_wait_exit "$log" 30
    rc=$?
    if [ -n "$victim" ] && [ $rc != 0 ] && [ $rc != 124 ]; then
        echo "  ok   a worker rank killed: the job ended, exit code $rc"
    else
        echo "  FAIL a worker rank killed: exit code $rc"; tail -n 20 "$log"; fail=1
    fi
fi

# start-up errors end the job, non-zero, with the reason in the log
expect_error() { # LABEL PATTERN baton-mpi options...
    local label=$1 pat=$2 log=$WORK/err.log
    shift 2
    mpi_start 3 "$log" "$@"
    mpi_wait_exit "$log" 60
    local rc=$?
    if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "$pat" "$log"; then
        echo "  ok   $label: exit code $rc, '$(grep -m1 "$pat" "$log")'"
    else
        echo "  FAIL $label: exit code $rc, log:"; cat "$log"; fail=1
    fi
}
[ $fail = 0 ] && expect_error "model missing on the worker ranks" "baton-worker: .*$WORK/missing.gguf" \
    --worker-model "$WORK/missing.gguf"
[ $fail = 0 ] && expect_error "too little worker memory" "cannot hold the model" --worker-memory 1M

[ $fail = 0 ] && echo "test_mpi: all passed" || echo "test_mpi: FAILED"
exit $fail
