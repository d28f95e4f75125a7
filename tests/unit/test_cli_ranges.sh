#!/usr/bin/env bash
# test_cli_ranges.sh - every binary refuses a bad number for a numeric option
# (wrap-around, zero or negative where they make no sense, trailing junk, empty,
# NaN, overflow) with its usage-error status and a message "OPTION: ..." that
# names the value, before it touches a file or the network; a good value gets
# past the parser (baton then fails to connect to 127.0.0.1:1, UNAVAILABLE).
# No cluster needed.
set -u
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
fail=0
n=0
bad() {
    echo "  FAIL $*"
    fail=1
}
NOWHERE=127.0.0.1:1 # nothing listens on port 1: a request that got past parsing fails to connect

# expect STATUS 'TEXT' PROGRAM ARGS...: PROGRAM exits with STATUS and its stderr contains TEXT
expect() {
    local want=$1 text=$2
    shift 2
    local err rc
    err=$(timeout 20 "$BIN/$@" 2>&1 >/dev/null)
    rc=$?
    n=$((n + 1))
    [ "$rc" = "$want" ] || { bad "$*: exit $rc, want $want ($err)"; return; }
    case $err in *"$text"*) ;; *) bad "$*: stderr lacks '$text': $err" ;; esac
}

gen() { expect "$1" "$2" tools/baton generate --server $NOWHERE --tokens 1,2 "${@:3}"; }
gen 2 "--max-tokens: expected an integer in [1, 2147483647], got '4294967296'" --max-tokens 4294967296
gen 2 "--max-tokens: expected an integer in [1, 2147483647], got '4294967297'" --max-tokens 4294967297
gen 2 "--max-tokens: expected an integer in [1, 2147483647], got '0'" --max-tokens 0
gen 2 "--max-tokens: " --max-tokens 12x
gen 2 "--max-tokens: " --max-tokens ""
gen 2 "--max-tokens: " --max-tokens " 5"
gen 2 "--max-tokens: " --max-tokens 99999999999999999999999
gen 2 "--repeat-penalty: expected a number in [0, 100], got '-1'" --repeat-penalty -1
gen 2 "--top-k: expected an integer in [0, 2147483647], got '-5'" --top-k -5
gen 2 "--temperature: expected a number in [0, 100], got 'nan'" --temperature nan
gen 2 "--temperature: " --temperature inf
gen 2 "--temperature: " --temperature -0.5
gen 2 "--top-p: expected a number in [0, 1], got '1.5'" --top-p 1.5
gen 2 "--min-p: " --min-p -0.1
gen 2 "--presence-penalty: " --presence-penalty 1e999
gen 2 "--frequency-penalty: " --frequency-penalty 0.5.5
gen 2 "--penalty-last-n: " --penalty-last-n -1
gen 2 "--seed: " --seed -3
gen 2 "--seed: " --seed 1.5
gen 2 "--deadline-ms: " --deadline-ms 10s
# good values reach the connection
gen 14 "cannot connect" --max-tokens 2147483647 --top-k 0 --top-p 1 --min-p 0 --temperature 0.7 \
    --repeat-penalty 1.1 --presence-penalty -0.5 --frequency-penalty 0.5 --penalty-last-n 64 --seed 9223372036854775807 \
    --deadline-ms 0

expect 2 "NODE: expected an integer in [1, 4294967295], got '0'" tools/batonctl drain 0 --server $NOWHERE
expect 2 "NODE: " tools/batonctl undrain 4294967296 --server $NOWHERE
expect 2 "NODE: " tools/batonctl remove " 3" --server $NOWHERE
expect 2 "NODE: " tools/batonctl remove 1.0 --server $NOWHERE

run() { expect 1 "$1" tools/baton-run --model /nonexistent.gguf --tokens 1 "${@:2}"; }
run "--max-tokens: expected an integer in [0, 1048576], got '4294967296'" --max-tokens 4294967296
run "--threads: expected an integer in [1, 1024], got '0'" --threads 0
run "--top-k: " --top-k -5
run "--temperature: " --temperature nan
run "--top-p: " --top-p 2
run "--ctx: " --ctx 0x10
run "--seed: " --seed -1

mk() { expect 2 "$1" tools/baton-mkmodel --preset tiny -o /nonexistent/x.gguf "${@:2}"; }
mk "--layers: expected an integer in [1, 4096], got '4294967297'" --layers 4294967297
mk "--threads: " --threads 0
mk "--seed: " --seed -1
mk "--embd: " --embd 256k

coord() { expect 2 "$1" coordinator/baton-coord --listen 127.0.0.1:0 --model /nonexistent.gguf "${@:2}"; }
coord "--slots: expected an integer in [1, 4096], got '4294967297'" --slots 4294967297
coord "--workers: " --workers 0
coord "--ctx: " --ctx 12x
coord "--heartbeat-timeout: " --heartbeat-timeout -1
coord "--max-frame: " --max-frame 8G
coord "--inflight: " --inflight ""

work() { expect 1 "$1" worker/baton-worker --coordinator $NOWHERE --model /nonexistent.gguf "${@:2}"; }
work "--threads: expected an integer in [1, 4096], got '4294967297'" --threads 4294967297
work "--threads: " --threads 2x
work "--memory: " --memory -1G
work "--memory: " --memory 1T
work "--speed: " --speed nan
work "--speed: " --speed 0
work "--max-frame: " --max-frame 100
work "--queue-limit: " --queue-limit 1K

expect 2 "--steps: expected an integer in [1, 1024], got '0'" tools/baton-bench codec --model /nonexistent.gguf --steps 0
expect 2 "--prompt: " tools/baton-bench codec --model /nonexistent.gguf --prompt 4294967328
expect 2 "--seconds: " tools/baton-bench codec --model /nonexistent.gguf --seconds nan
expect 2 "--tokens: " tools/baton-bench cluster --tokens 4294967298
expect 2 "--streams: " tools/baton-bench cluster --streams 8x
expect 2 "--gen: " tools/baton-bench transport --gen -1
expect 2 "--threads: " tools/baton-bench transport --threads 0
expect 2 "--seconds: " tools/baton-bench tokenizer --seconds -1

[ $fail = 0 ] && echo "PASS: $n bad or good numeric options across 7 binaries"
exit $fail
