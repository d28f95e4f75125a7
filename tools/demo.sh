#!/usr/bin/env bash
# The main job on one machine: install what is missing, build, make a demo model if
# none is given, then generate from it twice - in one process (baton-run) and on a
# local cluster of a coordinator and two workers (deploy/cluster-lib.sh) - and
# check that both give the same tokens.
#   tools/demo.sh                          demo model (tiny preset, Q8_0)
#   tools/demo.sh --model FILE [--workers N]
set -euo pipefail
cd "$(dirname "$0")/.."
model="" workers=2
while (($#)); do
  case $1 in
    --model) model=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bash tools/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)"
B=build/release
if [[ -z $model ]]; then
  model=build/demo-tiny.gguf
  [[ -f $model ]] || $B/tools/baton-mkmodel --preset tiny --type q8_0 -o "$model"
fi
prompt=1,2,3,4,5
echo "== one process: baton-run --model $model =="
solo=$($B/tools/baton-run --model "$model" --tokens $prompt --max-tokens 24)
echo "$solo"

echo "== local cluster: coordinator + $workers workers =="
BIN=$PWD/$B
# shellcheck source=../deploy/cluster-lib.sh
. deploy/cluster-lib.sh
trap cluster_stop EXIT
cluster_start "$model" "$workers"
cluster_wait_serving 120
"$(cluster_bin baton)" health --server "$CLUSTER_ADDR"
dist=$("$(cluster_bin baton)" generate --server "$CLUSTER_ADDR" --tokens $prompt --max-tokens 24 --ignore-eos --json |
       /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))')
echo "$dist"
if [[ $dist == "$solo" ]]; then
  echo "the cluster gave exactly the single-process tokens"
else
  echo "MISMATCH between the cluster and the single process" >&2
  exit 1
fi
