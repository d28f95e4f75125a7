#!/usr/bin/env bash
# netns.sh CMD ARGS...: runs CMD in a network namespace of its own with only a
# loopback interface (as root, where unshare works), so that a fuzzed address -
# the successor an assignment names - reaches nothing outside; elsewhere as is.
if [[ $(id -u) == 0 ]] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' netns "$@"
fi
exec "$@"
