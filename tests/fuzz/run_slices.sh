#!/usr/bin/env bash
# fuzz_slices: runs every fuzz target of the fuzz build (cmake --preset fuzz) for
# a short slice - BATON_FUZZ_SECONDS each (default 6) - from its seed corpus
# (tests/fuzz/NAME/, the regression inputs of past crashes included: each of them
# runs first), and fails on any crash, leak, timeout or sanitizer report.
# New inputs go to a scratch folder, not into the source tree (tools/fuzz.sh
# NAME SECONDS keeps them, for longer runs). Needs BATON_BUILD and BATON_SRC.
set -euo pipefail
: "${BATON_BUILD:?}" "${BATON_SRC:?}"
secs=${BATON_FUZZ_SECONDS:-6}
only=${1:-}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for bin in "$BATON_BUILD"/tests/fuzz/fuzz_*; do
  [[ -x $bin && ! -d $bin ]] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  [[ -z $only || $only == "$name" ]] || continue
  mkdir -p "$scratch/$name/corpus" "$scratch/$name/artifacts"
  log=$scratch/$name/log
  start=$(date +%s)
  if bash "$BATON_SRC/tests/fuzz/netns.sh" "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
      -print_final_stats=1 -close_fd_mask=2 -artifact_prefix="$scratch/$name/artifacts/" \
      "$scratch/$name/corpus" "$BATON_SRC/tests/fuzz/$name" >"$log" 2>&1; then
    stats=$(grep -E "^#[0-9]+.*(DONE|pulse|NEW|REDUCE)" "$log" | tail -1 || true)
    echo "fuzz_$name: ok in $(($(date +%s) - start)) s: ${stats:-no stats}"
  else
    echo "fuzz_$name: FAILED - the end of its log:"
    tail -60 "$log"
    for a in "$scratch/$name/artifacts"/*; do
      [[ -f $a ]] && echo "input: $a ($(stat -c %s "$a") bytes): $(xxd -l 96 -p "$a" | tr -d '\n')"
    done
    status=1
  fi
done
exit $status
