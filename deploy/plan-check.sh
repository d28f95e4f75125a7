#!/usr/bin/env bash
# plan-check.sh - the offline planner against a measurement on this machine.
#
#   deploy/plan-check.sh --model FILE [--workers 1,2,4] [--rate 1gbit] [--delay-ms 1] [--tokens N]
#                        [--streams S] [--build DIR]
#
# For each worker count: `baton-worker --measure` (threads: cores / workers, at
# least 1) gives this machine's [node] figures (memory bandwidth and GFLOP/s of
# one worker, its codec's ns per byte); with several workers, a second
# --measure with every core gives the host's memory bandwidth, which their
# stages share when they run at once (host-membw); a pool file lists that many
# nodes on one host (host = this machine: they share its cores, threads =
# what each worker runs) with the link given; `batonctl plan --pool` predicts
# one stream and S streams (default 8);
# deploy/netns-pool.sh then runs the same pool in network namespaces (the link's
# rate/delay on every worker) and times one `baton generate` and S at once (sum
# of their decode tokens/s). The prediction is the mean of two, measured before
# and after the run (the load of a shared machine drifts). Prints one line per
# worker count: predicted, measured, measured/predicted, and the load average
# (1 minute) before and after the row: figures taken above about 2 (the cores)
# measure the neighbours as much as Baton. Root only (namespaces).
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BATON_BUILD:-$here/../build}
model="" workers=1,2,4 rate="" delay="" tokens=12 streams=8
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --delay-ms) delay="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --streams) streams="$2"; shift 2 ;;
        --build) BIN="$2"; shift 2 ;;
        --help|-h) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "plan-check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "plan-check.sh: --model FILE is required" >&2; exit 2; }
PY=/usr/bin/python3
cores=$(nproc)
W=$(mktemp -d /tmp/baton-plancheck.XXXXXX)
trap 'rm -rf "$W"' EXIT
link_bps=10G lat=0.05 # a veth pair without a qdisc: memory copies
[ -n "$rate" ] && link_bps=$($PY -c "import re; v='$rate'; m=re.match(r'([0-9.]+)([kmg]?)bit', v.lower()); print(float(m.group(1)) * {'':1,'k':1e3,'m':1e6,'g':1e9}[m.group(2)])")
[ -n "$delay" ] && lat=$($PY -c "print($delay / 2)") # both ends of a hop: the hop's delay
printf "%-8s %-10s %12s %12s %7s %12s %12s %7s %s\n" WORKERS LINK PRED-1 MEAS-1 RATIO "PRED-$streams" "MEAS-$streams" RATIO LOAD
IFS=, read -r -a counts <<< "$workers"
for n in "${counts[@]}"; do
    th=$((cores / n)); [ $th -lt 1 ] && th=1
    predict() { # measure this machine now, write the pool file, predict: "ONE MULTI"
        "$BIN/worker/baton-worker" --measure --model "$model" --threads $th > "$W/node.ini" 2>"$W/measure.err" ||
            { cat "$W/measure.err"; exit 1; }
        hostbw=""
        if [ "$n" -gt 1 ]; then # the stages that run at once share the host's memory
            "$BIN/worker/baton-worker" --measure --model "$model" --threads $cores > "$W/host.ini" 2>"$W/measure.err" ||
                { cat "$W/measure.err"; exit 1; }
            hostbw=$(sed -n 's/^membw = //p' "$W/host.ini")
        fi
        { echo "[pool]"; echo "ctx = 4096"; echo "slots = 16"
          for k in $(seq 1 "$n"); do
              sed -n "/^\[node/,\$p" "$W/node.ini" | sed -e "s/^\[node .*\]/[node w$k]/" -e "s/^cores = .*/cores = $cores/" \
                  -e "s/^link = .*/link = $link_bps/"
              echo "threads = $th"; echo "host = this"; echo "latency-ms = $lat"
              [ -n "$hostbw" ] && echo "host-membw = $hostbw"
          done; } > "$W/pool.ini"
        pred=$("$BIN/tools/batonctl" plan --pool "$W/pool.ini" --model "$model" --streams "$streams" --json) ||
            { echo "plan failed"; exit 1; }
        p1=$(echo "$pred" | $PY -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["single_stream_tps"])')
        pm=$(echo "$pred" | $PY -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["multi_stream_tps"])')
        echo "$p1 $pm"
    }
    # measured before and after the run, averaged: the load of a shared machine drifts
    load0=$(cut -d' ' -f1 /proc/loadavg)
    before=$(predict) || { echo "$before"; exit 1; }
    cat > "$W/run.sh" <<RUN
g() { "\$BIN/tools/baton" generate --server "\$BATON_SERVER" --tokens \$1 --max-tokens $tokens --ignore-eos --json; }
g 1,2,3 > "$W/single.json"
for i in \$(seq 1 $streams); do g \$i,\$((i + 7)),9 > "$W/multi-\$i.json" & done
wait
RUN
    "$here/netns-pool.sh" --build "$BIN" --model "$model" --workers "$n" --threads $th ${rate:+--rate $rate} \
        ${delay:+--delay-ms $delay} --worker-opts "--handshake-timeout 120000" --run "bash $W/run.sh" -- --ctx 4096 --slots 16 --heartbeat-timeout 120000 --handshake-timeout 120000 \
        --step-timeout 600000 2>"$W/pool.err" ||
        { cat "$W/pool.err"; exit 1; }
    after=$(predict) || { echo "$after"; exit 1; }
    p1=$($PY -c "print('%.3f' % ((${before% *} + ${after% *}) / 2))")
    pm=$($PY -c "print('%.3f' % ((${before#* } + ${after#* }) / 2))")
    for f in "$W"/multi-*.json; do
        grep -q '"status": *"OK"' "$f" || { echo "a stream failed: $(cut -c 1-300 "$f")"; exit 1; }
    done
    grep -q '"status": *"OK"' "$W/single.json" || { echo "the single stream failed: $(cat "$W/single.json")"; exit 1; }
    m1=$($PY -c "import json; print('%.3f' % json.load(open('$W/single.json'))['decode_tok_s'])")
    mm=$($PY -c "import json,glob; print('%.3f' % sum(json.load(open(f))['decode_tok_s'] for f in glob.glob('$W/multi-*.json')))")
    printf "%-8s %-10s %12s %12s %7.2f %12s %12s %7.2f %s\n" "$n" "${rate:-veth}${delay:+/${delay}ms}" "$p1" "$m1" \
        "$($PY -c "print($m1 / $p1)")" "$pm" "$mm" "$($PY -c "print($mm / $pm)")" "$load0-$(cut -d' ' -f1 /proc/loadavg)"
done
