#!/usr/bin/env bash
# tools/fuzz.sh NAME SECONDS [LIBFUZZER OPTIONS...]: a longer run of one fuzz
# target (tests/fuzz/fuzz_NAME.c) - builds the fuzz configuration if needed, then
# fuzzes from the seeds in tests/fuzz/NAME/, keeping the new inputs it finds in
# build/fuzz/corpus/NAME/ (reused by the next run). A crash leaves its input in
# build/fuzz/artifacts/NAME/: fix it, then copy the input into tests/fuzz/NAME/
# as a regression seed (every test run replays it). NAME=all: every target, one
# after the other, SECONDS each.
#   tools/fuzz.sh frame 600
#   nice -n 15 tools/fuzz.sh coord 3600 -jobs=1
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# < 2)); then
  echo "usage: tools/fuzz.sh NAME SECONDS [libFuzzer options]; NAME one of:" \
    $(ls tests/fuzz/fuzz_*.c | grep -v fuzz_common | sed 's|.*/fuzz_||; s|\.c$||') all >&2
  exit 2
fi
name=$1 secs=$2
shift 2
[[ -f build/fuzz/CMakeCache.txt ]] || cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzz_targets >/dev/null
names=("$name")
[[ $name == all ]] && names=($(ls tests/fuzz/fuzz_*.c | grep -v fuzz_common | sed 's|.*/fuzz_||; s|\.c$||'))
for n in "${names[@]}"; do
  bin=build/fuzz/tests/fuzz/fuzz_$n
  [[ -x $bin ]] || { echo "fuzz.sh: no target fuzz_$n" >&2; exit 2; }
  mkdir -p "build/fuzz/corpus/$n" "build/fuzz/artifacts/$n"
  echo "== fuzz_$n for $secs s =="
  bash tests/fuzz/netns.sh "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
    -close_fd_mask=2 -artifact_prefix="build/fuzz/artifacts/$n/" "$@" "build/fuzz/corpus/$n" "tests/fuzz/$n"
done
