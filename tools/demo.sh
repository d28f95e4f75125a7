#!/usr/bin/env bash
# The main job on one machine: install what is missing, build, make a demo model if
# none is given, and generate from it.
#   tools/demo.sh                 demo model (tiny preset), generate 24 tokens
#   tools/demo.sh --model FILE    your own Qwen2 GGUF
set -euo pipefail
cd "$(dirname "$0")/.."
model=""
while (($#)); do
  case $1 in
    --model) model=$2; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bash tools/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)"
if [[ -z $model ]]; then
  model=build/demo-tiny.gguf
  [[ -f $model ]] || build/release/tools/baton-mkmodel --preset tiny --type q8_0 -o "$model"
fi
echo "== baton-run --model $model =="
build/release/tools/baton-run --model "$model" --tokens 1,2,3,4,5 --max-tokens 24
