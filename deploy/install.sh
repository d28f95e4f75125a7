#!/usr/bin/env bash
# install.sh - build Baton and install it on this machine of the pool.
#
#   deploy/install.sh [--prefix /usr/local] [--build-dir DIR] [--system] [--no-deps]
#
# Installs the Debian packages it needs (tools/install-deps.sh; --no-deps skips),
# configures a release build (-O2, no sanitizers) in DIR (default build/install),
# builds it and runs `cmake --install DIR --prefix PREFIX`: the binaries in
# PREFIX/bin, the systemd units in PREFIX/lib/systemd/system (naming PREFIX's
# binaries and config), PREFIX/etc/baton/baton.conf.example (/etc/baton for
# --prefix /usr), scripts and README in PREFIX/share/doc/baton.
# --system (root) also creates the system user "baton", /etc/baton/baton.conf from
# the example if there is none, /var/lib/baton for the model, and runs
# `systemctl daemon-reload` where systemd runs. Then: edit the config, and
# `systemctl enable --now baton-coord` (coordinator host) or baton-worker.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local build="$src/build/install" system=0 deps=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --build-dir) build="$2"; shift 2 ;;
        --system) system=1; shift ;;
        --no-deps) deps=0; shift ;;
        --help|-h) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ $deps = 1 ] && "$src/tools/install-deps.sh"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
cmake --build "$build" -j"$(nproc)"
cmake --install "$build" --prefix "$prefix"
if [ $system = 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "install.sh: --system needs root" >&2; exit 2; }
    id baton >/dev/null 2>&1 || useradd --system --home-dir /var/lib/baton --shell /usr/sbin/nologin baton
    install -d -o root -g baton -m 0750 /etc/baton
    install -d -o baton -g baton -m 0750 /var/lib/baton
    conf_dir=/etc/baton
    [ "$prefix" = /usr ] || conf_dir="$prefix/etc/baton"
    [ -e "$conf_dir/baton.conf" ] || install -o root -g baton -m 0640 "$conf_dir/baton.conf.example" "$conf_dir/baton.conf"
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    echo "install.sh: edit $conf_dir/baton.conf, put the model in /var/lib/baton, then" \
        "systemctl enable --now baton-coord (or baton-worker)"
fi
