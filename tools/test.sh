#!/usr/bin/env bash
# Runs every test of Baton on a fresh Debian machine: installs what is missing,
# then builds and runs the whole suite twice - a normal optimised build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build.
#   tools/test.sh            both builds
#   tools/test.sh release    only the normal build (quicker, while developing)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
configs=("${@:-release asan}")
read -r -a configs <<<"${configs[*]}"
jobs=$(nproc)
status=0
for cfg in "${configs[@]}"; do
  dir=build/test-$cfg
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBATON_WERROR=ON)
  case $cfg in
    release) ;;
    asan) flags+=(-DBATON_SANITIZE=ON) ;;
    *) echo "test.sh: unknown configuration '$cfg' (release or asan)" >&2; exit 2 ;;
  esac
  echo "== $cfg build =="
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== $cfg tests =="
  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  (cd "$dir" && ctest --output-on-failure --timeout 900) || status=1
done
exit $status
