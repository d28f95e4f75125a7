#!/usr/bin/env bash
# Runs every test of Baton on a fresh Debian machine: installs what is missing,
# then builds and runs the whole suite twice - a normal optimised build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build - and then the fuzz build
# (clang, libFuzzer): every fuzz target of tests/fuzz for a short slice.
#   tools/test.sh            all three
#   tools/test.sh release    only the normal build (quicker, while developing)
#   tools/test.sh fuzz       only the fuzz slices (BATON_FUZZ_SECONDS each, default 6)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
configs=("${@:-release asan fuzz}")
read -r -a configs <<<"${configs[*]}"
jobs=$(nproc)
status=0
for cfg in "${configs[@]}"; do
  # the build folders and options are CMakePresets.json's: release = build/test-release,
  # asan = build/test-asan (-DBATON_SANITIZE=ON); both RelWithDebInfo, -DBATON_WERROR=ON
  case $cfg in
    release | asan | fuzz) ;;
    *) echo "test.sh: unknown configuration '$cfg' (release, asan or fuzz)" >&2; exit 2 ;;
  esac
  echo "== $cfg build =="
  cmake --preset "$cfg" >/dev/null
  # fuzz = build/fuzz: clang, -fsanitize=fuzzer-no-link,address,undefined; only its targets
  if [[ $cfg == fuzz ]]; then cmake --build --preset fuzz -j"$jobs" --target fuzz_targets
  else cmake --build --preset "$cfg" -j"$jobs"; fi
  echo "== $cfg tests =="
  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  ctest --preset "$cfg" || status=1 # --output-on-failure --timeout 900 (the preset's)
done
exit $status
