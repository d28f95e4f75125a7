#!/usr/bin/env bash
# tools/memcheck.sh [SECONDS] [STREAMS]: valgrind memcheck of a short load run -
# baton-bench load (release build) with the coordinator and 3 workers under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite --track-fds=no
# (default 300 s, 4 streams: fewer streams get more requests done under valgrind; heartbeat and step timeouts of 60 and 120 s: valgrind is
# ~30x slower). Prints each daemon's ERROR SUMMARY and leak summary
# and the first Baton frames of every error; exits 1 if any daemon reported an
# error (invalid access, uninitialised value or a definite leak).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300} streams=${2:-4}
bench=build/test-release/tools/baton-bench
[[ -x $bench ]] || { echo "memcheck.sh: build the release configuration first" >&2; exit 2; }
logs=$(mktemp -d /tmp/baton-memcheck.XXXXXX)
export BATON_LOAD_WRAP="valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --log-file=$logs/vg-%p.log"
"$bench" load --streams "$streams" --seconds "$secs" --warmup 5 --workers 3 \
  --coord-opt --heartbeat-timeout --coord-opt 60000 --coord-opt --step-timeout --coord-opt 120000 || echo "(the load run itself failed: under valgrind the daemons run ~30x slower)"
status=0
for f in "$logs"/vg-*.log; do
  cmd=$(grep -m1 "Command:" "$f" | sed 's/.*Command: //' | cut -c1-60)
  errs=$(grep -m1 "ERROR SUMMARY" "$f" | sed 's/.*ERROR SUMMARY: //')
  echo "== $cmd: $errs"
  grep -E "definitely lost:|indirectly lost:|Invalid|uninitialised|Conditional jump" "$f" | sort | uniq -c | head -10 || true
  case $errs in 0\ errors*) ;; *) status=1; grep -A12 -E "^==[0-9]+== (Invalid|Conditional|Use of|[0-9,]+ bytes in)" "$f" | head -80 ;; esac
done
echo "valgrind logs: $logs"
exit $status
