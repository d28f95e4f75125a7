# netns-lib.sh - a pool of hosts on one machine: network namespaces joined by a
# bridge (sourced by deploy/netns-pool.sh and tests/cluster/test_cluster_netns.sh).
# Needs root (ip netns, tc). Addresses exist only inside the namespaces created here.
#
#   netns_network PREFIX N [DELAYS_MS] [RATES]
#       namespace PREFIX-hub holds bridge br0 at 10.77.0.1/24 (the coordinator's
#       host); PREFIX-wK (K = 1..N) is worker K's host at 10.77.0.(K+1), joined by a
#       veth pair (hub side "linkK", worker side "eth0"). DELAYS_MS and RATES are
#       comma lists, one entry per worker (the last repeats; empty: none): a qdisc
#       on the worker's eth0 delays (netem) and/or rate-limits (netem with a delay,
#       else tbf; tc's units: 1gbit, 100mbit) what the worker sends. Sets NETNS_HUB, NETNS_W[K], NETNS_IP[K].
#   netns_bg NS LOG CMD...     CMD in namespace NS in the background, output to LOG;
#                              its pid is appended to NETNS_PIDS
#   netns_stop                 SIGTERM to NETNS_PIDS, SIGKILL after 3 s, then any process
#                              still inside the namespaces created here
#   netns_destroy              netns_stop, then delete every namespace created here
# Nothing outside these namespaces is touched; netns_destroy is safe to call twice.

NETNS_ALL=()
NETNS_PIDS=()
NETNS_W=()
NETNS_IP=()

# netns_pick LIST K: entry K (1-based) of a comma list, the last one repeated
netns_pick() {
    local IFS=, a
    read -r -a a <<< "$1"
    [ ${#a[@]} = 0 ] && return 0
    if [ "$2" -le ${#a[@]} ]; then echo "${a[$(($2 - 1))]}"; else echo "${a[$((${#a[@]} - 1))]}"; fi
}

netns_network() {
    local prefix=$1 n=$2 delays=${3:-} rates=${4:-} k ns d r
    NETNS_HUB=$prefix-hub
    ip netns add "$NETNS_HUB" || return 1
    NETNS_ALL+=("$NETNS_HUB")
    ip -n "$NETNS_HUB" link set lo up &&
        ip -n "$NETNS_HUB" link add br0 type bridge &&
        ip -n "$NETNS_HUB" addr add 10.77.0.1/24 dev br0 &&
        ip -n "$NETNS_HUB" link set br0 up || return 1
    for k in $(seq 1 "$n"); do
        ns=$prefix-w$k
        ip netns add "$ns" || return 1
        NETNS_ALL+=("$ns")
        NETNS_W[$k]=$ns
        NETNS_IP[$k]=10.77.0.$((k + 1))
        ip -n "$ns" link set lo up &&
            ip link add "link$k" netns "$NETNS_HUB" type veth peer name eth0 netns "$ns" &&
            ip -n "$NETNS_HUB" link set "link$k" master br0 up &&
            ip -n "$ns" addr add "${NETNS_IP[$k]}/24" dev eth0 &&
            ip -n "$ns" link set eth0 up || return 1
        d=$(netns_pick "$delays" "$k")
        r=$(netns_pick "$rates" "$k")
        if [ -n "$d" ]; then # netem: delay (and rate)
            ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "${d}ms" ${r:+rate $r} limit 100000 || {
                echo "netns-lib: no netem qdisc (a kernel without CONFIG_NET_SCH_NETEM?): cannot delay links" >&2
                return 1
            }
        elif [ -n "$r" ]; then # tbf: rate only (kernels without netem have it more often)
            ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$r" burst 64kb latency 100ms || return 1
        fi
    done
}

netns_bg() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" > "$log" 2>&1 &
    NETNS_PIDS+=($!)
}

netns_stop() {
    local p ns i
    for p in "${NETNS_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${NETNS_PIDS[@]}"; do
        for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    NETNS_PIDS=()
    # anything else started inside our namespaces (a client of the caller's)
    for ns in "${NETNS_ALL[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
}

netns_destroy() {
    local ns
    netns_stop
    for ns in "${NETNS_ALL[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS_ALL=()
}
