#!/usr/bin/env bash
# test_http_page.sh - the chat page that baton-coord --http-listen serves at /, in
# headless Chromium (Debian's chromium, driven by puppeteer-core from npm:
# tests/http/page_check.js) on a 2-worker loopback cluster with an API key: a prompt
# typed into the page streams an answer (seen growing) equal to the API's own answer
# for the same chat, with tokens/s and the stage plan shown. The screenshot is saved
# as $BATON_BUILD/http-page.png.
set -u
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
. "$SRC/tests/http/lib.sh"
test_begin http-page 25

command -v chromium >/dev/null || { bad "chromium is not installed (tools/install-deps.sh installs it)"; exit 1; }
http_npm || { bad "npm ci of tests/http"; exit 1; }
MODEL=$WORK/baton-test.gguf
http_model "$MODEL" 8 || { bad "mkmodel"; exit 1; }
http_cluster "$MODEL" 2 --ctx 1024 || { bad "cluster"; exit 1; }
echo "cluster serving, chat page at $HTTP/"
if timeout 180 node "$SRC/tests/http/page_check.js" "$HTTP" "$KEY" "Write a haiku about pipelines 🚀" 40 "$BIN/http-page.png"; then
    ok "chat page in headless Chromium"
else
    bad "chat page (see above)"
fi
cluster_stop
cluster_check_logs || fail=1
[ $fail = 0 ] && echo "test_http_page: all passed" || echo "test_http_page: FAILED"
exit $fail
