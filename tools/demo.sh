#!/usr/bin/env bash
# The main job on one machine: install what is missing, build, make the demo model
# if no model is given, then generate text from it twice - in one process
# (baton-run) and on a local cluster of a coordinator and two workers
# (deploy/cluster-lib.sh) - and check that both give the same tokens.
#   tools/demo.sh                          the trained demo model (tools/train-demo: 4 layers,
#                                          Qwen's tokenizer, trained on Debian's fortunes)
#   tools/demo.sh --model FILE [--workers N] [--prompt TEXT] [--max-tokens N] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model="" workers=2 prompt="The best way to" max=40 B=build/release
while (($#)); do
  case $1 in
    --model) model=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --max-tokens) max=$2; shift 2 ;;
    --build) B=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bash tools/install-deps.sh
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$B" -j"$(nproc)"
# the demo model: made once from the committed trained weights (tools/train-demo/gguf.sh)
[[ -n $model ]] || model=$(bash tools/train-demo/gguf.sh "$B")
echo "== one process: baton-run --model $model --prompt \"$prompt\" =="
solo=$($B/tools/baton-run --model "$model" --prompt "$prompt" --max-tokens "$max" --json |
       /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))')
echo "$prompt$($B/tools/baton-run --model "$model" --prompt "$prompt" --max-tokens "$max" 2>/dev/null)"

echo "== local cluster: coordinator + $workers workers =="
BIN=$PWD/$B
# shellcheck source=../deploy/cluster-lib.sh
. deploy/cluster-lib.sh
trap cluster_stop EXIT
cluster_start "$model" "$workers"
cluster_wait_serving 120
"$(cluster_bin baton)" health --server "$CLUSTER_ADDR"
json=$("$(cluster_bin baton)" generate --server "$CLUSTER_ADDR" --prompt "$prompt" --max-tokens "$max" --json)
# baton-run's ids leave out the end-of-generation token that may end the text
dist=$(/usr/bin/python3 -c 'import json,sys; t=json.loads(sys.argv[1])["tokens"]; print(",".join(map(str, t[:-1] if json.loads(sys.argv[1]).get("finish_reason") == "eos" else t)))' "$json")
echo "$prompt$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("text", ""))' "$json")"
if [[ $dist == "$solo" ]]; then
  echo "the cluster gave exactly the single-process tokens"
else
  echo "MISMATCH between the cluster ($dist) and the single process ($solo)" >&2
  exit 1
fi
