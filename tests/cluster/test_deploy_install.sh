#!/usr/bin/env bash
# test_deploy_install.sh - the install of a pool machine: `cmake --install` into a
# temporary prefix puts the binaries, the systemd units and the example config
# there; the units name that prefix's binaries and config, carry the restart and
# hardening settings and pass `systemd-analyze verify` (which does flag a broken
# copy); the installed baton-coord and 2 baton-workers, started from the installed
# example config (edited as README says, the workers' --coordinator given as a flag
# over the file), serve a request with baton-run's tokens.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin deploy-install 15
P=$WORK/prefix
if ! T cmake --install "$BIN" --prefix "$P" > "$WORK/install.log" 2>&1; then
    bad "cmake --install failed: $(tail -n 5 "$WORK/install.log")"
    exit 1
fi
for f in bin/baton-coord bin/baton-worker bin/baton bin/batonctl bin/baton-run bin/baton-mkmodel \
    lib/systemd/system/baton-coord.service lib/systemd/system/baton-worker.service etc/baton/baton.conf.example \
    share/doc/baton/deploy/netns-pool.sh share/doc/baton/deploy/install.sh; do
    [ -e "$P/$f" ] || bad "not installed: $f"
done
ok "installed into a temporary prefix"

# the units
if ! command -v systemd-analyze > /dev/null; then
    bad "systemd-analyze is missing (tools/install-deps.sh installs systemd)"
else
    for u in baton-coord baton-worker; do
        unit=$P/lib/systemd/system/$u.service
        out=$(systemd-analyze verify "$unit" 2>&1)
        rc=$?
        [ $rc = 0 ] && [ -z "$out" ] && ok "$u.service passes systemd-analyze verify" || bad "$u.service: verify exit $rc: $out"
        missing=""
        for line in "ExecStart=$P/bin/$u --config $P/etc/baton/baton.conf" Restart=on-failure User=baton \
            NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes CapabilityBoundingSet=; do
            grep -qx -- "$line" "$unit" || missing="$missing '$line'"
        done
        [ -z "$missing" ] && ok "$u.service: restart, user, config and hardening lines" || bad "$u.service lacks$missing"
        # verify is no rubber stamp: a misspelt key and a missing binary are reported
        sed -e 's/^NoNewPrivileges=/NoNewPrivilege=/' -e "s|$P/bin/$u|$P/bin/$u-missing|" "$unit" > "$WORK/$u.service"
        out=$(systemd-analyze verify "$WORK/$u.service" 2>&1)
        case $out in *NoNewPrivilege*) ;; *) bad "verify did not flag a misspelt key in a broken copy: $out" ;; esac
    done
fi

# the installed binaries from the installed example config
MODEL=$WORK/tiny.gguf
T "$P/bin/baton-mkmodel" --preset tiny --layers 4 --type q8_0 -o "$MODEL" > /dev/null 2>&1 || { bad "mkmodel"; exit 1; }
sed -e "s|^model = .*|model = $MODEL|" -e "s|^listen = 0.0.0.0:7000|listen = 127.0.0.1:0|" -e "s|^workers = 4|workers = 2|" \
    -e "s|^listen = 192.168.1.11:7001.*|listen = 127.0.0.1:0|" -e "s|^# threads = 8|threads = 1|" \
    "$P/etc/baton/baton.conf.example" > "$WORK/baton.conf"
"$P/bin/baton-coord" --config "$WORK/baton.conf" > "$WORK/coord.log" 2>&1 &
CLUSTER_PIDS+=($!)
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/coord.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { bad "the installed coordinator did not start: $(cat "$WORK/coord.log")"; exit 1; }
CLUSTER_ADDR=127.0.0.1:$port
for k in 1 2; do
    "$P/bin/baton-worker" --config "$WORK/baton.conf" --coordinator "$CLUSTER_ADDR" > "$WORK/worker-$k.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    sleep 0.1
done
wait_for 60 sh -c "timeout 10 '$P/bin/baton' health --server $CLUSTER_ADDR --json 2>/dev/null | grep -q '\"serving\": *true'" ||
    { bad "not serving"; exit 1; }
want=$(T "$P/bin/baton-run" --model "$MODEL" --threads 1 --tokens 7,8,9 --max-tokens 16 --json | json_tokens)
got=$(TC "$P/bin/baton" generate --server "$CLUSTER_ADDR" --tokens 7,8,9 --max-tokens 16 --ignore-eos --json | json_tokens)
[ -n "$got" ] && [ "$got" = "$want" ] && ok "installed coordinator + 2 workers from the config file serve baton-run's tokens" ||
    bad "tokens: got '$got', want '$want'"
joined=$(TC "$P/bin/batonctl" nodes --server "$CLUSTER_ADDR" --json | jget 'len(d["nodes"])')
planned=$(grep -c "plan 1 over 2 worker(s)" "$WORK/coord.log")
[ "$joined" = 2 ] && [ "$planned" = 1 ] && ok "workers = 2 from the file: planned once both had joined" ||
    bad "nodes: $joined, 'plan 1 over 2 worker(s)' lines: $planned"

cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_deploy_install: all passed" || echo "test_deploy_install: FAILED"
exit $fail
