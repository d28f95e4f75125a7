#!/usr/bin/env bash
# test_pool_plan.sh - the offline planner, `batonctl plan --pool` (coordinator/pool.c over
# the coordinator's plan_layers), and `baton-worker --measure`. Broken pool files are
# refused naming the file, line and key; 4 x 16 GB desktops split QwQ-32B Q4_K_M and
# Q8_0 into 4 stages that fit; the predictions move as the timing model says (double
# the bandwidth: about double one stream's tokens/s; Q8_0 slower than Q4_K_M; 8 streams
# faster than one; a slow link becomes the bottleneck of 8 streams); a pool too small says what is
# needed; a machine's --measure section plans a model file. No cluster needed.
set -u
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
PY=/usr/bin/python3
fail=0
n=0
W=$(mktemp -d /tmp/baton-pool.XXXXXX)
trap 'rm -rf "$W"' EXIT
bad() { echo "  FAIL $*"; fail=1; }
CTL=$BIN/tools/batonctl
expect() { # STATUS 'TEXT' ARGS...: batonctl ARGS exits STATUS, stderr contains TEXT
    local want=$1 text=$2 err rc
    shift 2
    err=$(timeout 20 "$CTL" "$@" 2>&1 >/dev/null)
    rc=$?
    n=$((n + 1))
    [ "$rc" = "$want" ] || { bad "$*: exit $rc, want $want ($err)"; return; }
    case $err in *"$text"*) ;; *) bad "$*: stderr lacks '$text': $err" ;; esac
}
get() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
Q=(--preset qwq-32b --type q4_k_m)
printf '[pool]\nslots = 4\n\n[node desk]\ncount = 4\nmemory = 14G\ncores = 8\nmembw = 20G\nlink = 1G\nspeed = 3\n' > "$W/unknown.ini"
expect 2 "$W/unknown.ini:10: unknown key 'speed' in [node desk]" plan --pool "$W/unknown.ini" "${Q[@]}"
printf '[node desk]\nmemory = 14G\nmembw = fast\n' > "$W/badnum.ini"
expect 2 "$W/badnum.ini:3: key 'membw': expected a number" plan --pool "$W/badnum.ini" "${Q[@]}"
printf '[node desk]\nmemory = 14X\nmembw = 1G\n' > "$W/badsize.ini"
expect 2 "$W/badsize.ini:2: key 'memory': expected a size in bytes" plan --pool "$W/badsize.ini" "${Q[@]}"
printf '[pool]\nctx = 0\n[node a]\nmemory = 1G\nmembw = 1G\n' > "$W/badctx.ini"
expect 2 "$W/badctx.ini:2: key 'ctx': expected an integer" plan --pool "$W/badctx.ini" "${Q[@]}"
printf '[machines]\nmemory = 1G\n' > "$W/badsect.ini"
expect 2 "$W/badsect.ini:2: key 'memory' in [machines]: the sections are [pool] and [node NAME]" plan --pool "$W/badsect.ini" "${Q[@]}"
printf '[node a]\ncores = 4\n' > "$W/nomem.ini"
expect 2 "[node a] needs memory and membw" plan --pool "$W/nomem.ini" "${Q[@]}"
expect 2 "cannot read $W/none.ini" plan --pool "$W/none.ini" "${Q[@]}"

desk() { printf '[pool]\nslots = 4\n[node desk]\ncount = %s\nmemory = 14G\ncores = 8\nmembw = %s\ngflops = 300\nlink = %s\nlatency-ms = 0.1\n' "$@"; }
desk 4 20G 1G > "$W/desk4.ini"
desk 4 40G 1G > "$W/desk4x2.ini"
desk 4 20G 500K > "$W/slowlink.ini"
desk 1 20G 1G > "$W/one.ini"
expect 2 "--type: expected q4_k_m or q8_0, got 'q3'" plan --pool "$W/desk4.ini" --preset qwq-32b --type q3
expect 2 "needs --model FILE or --preset" plan --pool "$W/desk4.ini"
q4=$("$CTL" plan --pool "$W/desk4.ini" "${Q[@]}" --json) || bad "plan desk4 q4_k_m"
q8=$("$CTL" plan --pool "$W/desk4.ini" --preset qwq-32b --type q8_0 --json) || bad "plan desk4 q8_0"
fast=$("$CTL" plan --pool "$W/desk4x2.ini" "${Q[@]}" --json) || bad "plan desk4x2"
slow=$("$CTL" plan --pool "$W/slowlink.ini" "${Q[@]}" --json) || bad "plan slowlink"
s=$(echo "$q4" | get '"%d %s %s" % (len(d["stages"]), all(s["bytes"] <= s["memory_bytes"] for s in d["stages"]), sum(s["layer_end"] - s["layer_begin"] for s in d["stages"]))')
[ "$s" = "4 True 64" ] && echo "  ok   4 x 16 GB, Q4_K_M: 4 stages, 64 layers, each within its memory" || bad "q4_k_m plan: $s"
s=$(echo "$q8" | get '"%d %s" % (len(d["stages"]), all(s["bytes"] <= s["memory_bytes"] for s in d["stages"]))')
[ "$s" = "4 True" ] && echo "  ok   4 x 16 GB, Q8_0: 4 stages within memory" || bad "q8_0 plan: $s"
r=$($PY -c "import json; a=json.loads('''$q4'''); b=json.loads('''$fast'''); print('%.3f' % (b['single_stream_tps'] / a['single_stream_tps']))")
$PY -c "import sys; sys.exit(not 1.5 < $r < 2.0)" && echo "  ok   twice the memory bandwidth: one stream x$r" || bad "bandwidth x2: one stream x$r"
s=$($PY -c "import json; a=json.loads('''$q4'''); b=json.loads('''$q8'''); print(b['single_stream_tps'] < a['single_stream_tps'], a['multi_stream_tps'] > 2 * a['single_stream_tps'], a['prefill_tps'] > a['multi_stream_tps'])")
[ "$s" = "True True True" ] && echo "  ok   Q8_0 slower than Q4_K_M; 8 streams > 2 x one; prefill > decode" || bad "orderings: $s"
s=$(echo "$slow" | get 'd["multi_stream_bottleneck"]')
case $s in *"mostly link transfer"*) echo "  ok   a 500 kbit/s link is the bottleneck: $s" ;; *) bad "slow link bottleneck: $s" ;; esac
expect 1 "no plan fits: the model needs" plan --pool "$W/one.ini" "${Q[@]}"

# a machine's --measure section plans a model file
"$BIN/tools/baton-mkmodel" --preset tiny --layers 4 --type q8_0 -o "$W/tiny.gguf" > /dev/null 2>&1 || bad "mkmodel"
if "$BIN/worker/baton-worker" --measure --model "$W/tiny.gguf" --threads 1 > "$W/node.ini" 2> "$W/measure.err"; then
    grep -q "^\[node " "$W/node.ini" && grep -q "^membw = " "$W/node.ini" && grep -q "^gflops = " "$W/node.ini" &&
        grep -q "^memory = " "$W/node.ini" && echo "  ok   baton-worker --measure prints a [node] section" ||
        bad "--measure output: $(cat "$W/node.ini")"
    { echo "[pool]"; echo "slots = 2"; cat "$W/node.ini"; sed 's/^\[node .*\]/[node second]/' "$W/node.ini"; } > "$W/measured.ini"
    s=$("$CTL" plan --pool "$W/measured.ini" --model "$W/tiny.gguf" --json | get '"%d %d" % (len(d["stages"]), d["stages"][-1]["layer_end"])')
    [ "$s" = "2 4" ] && echo "  ok   two measured machines plan the 4-layer file in 2 stages" || bad "measured plan: '$s'"
else
    bad "--measure failed: $(cat "$W/measure.err")"
fi
err=$("$BIN/worker/baton-worker" --measure 2>&1)
case $err in *"--measure needs --model"*) ;; *) bad "--measure without --model: $err" ;; esac

# two workers on one 2-core host, one thread each (as deploy/plan-check.sh writes it): with
# host-membw their stages running at once share the host's memory; a slow codec shows
shared() { # HOSTBW CODEC_NS
    printf '[pool]\nslots = 4\n'
    for k in 1 2; do
        printf '[node w%d]\nmemory = 40G\ncores = 2\nthreads = 1\nhost = this\nmembw = 20G\ngflops = 30000\nlink = 10G\n' $k
        printf 'latency-ms = 0.05\ncodec-ns-per-byte = %s\n' "$2"
        [ -n "$1" ] && printf 'host-membw = %s\n' "$1"
    done
}
shared "" 0.7 > "$W/shared.ini"
shared 24G 0.7 > "$W/sharedbw.ini"
shared "" 0 > "$W/nocodec.ini"
shared "" 100000 > "$W/slowcodec.ini"
P=(--preset qwq-32b --type q8_0 --streams 8 --json)
for f in shared sharedbw nocodec slowcodec; do
    "$CTL" plan --pool "$W/$f.ini" "${P[@]}" > "$W/$f.json" || bad "plan $f"
done
s=$($PY - "$W" <<'PY'
import json, sys
a, b = (json.load(open(f"{sys.argv[1]}/{n}.json")) for n in ("shared", "sharedbw"))
r = b["multi_stream_tps"] / a["multi_stream_tps"]
print("%.3f %s %s" % (r, abs(b["single_stream_tps"] / a["single_stream_tps"] - 1) < 1e-9,
                      "host this memory bandwidth" in b["multi_stream_bottleneck"]))
PY
)
case $s in
    *" True True") $PY -c "import sys; sys.exit(not 0.55 < ${s%% *} < 0.65)" &&
        echo "  ok   host-membw 24G for 2 stages of 20G: 8 streams x${s%% *} (want about 24/40), one stream unchanged, named" ||
        bad "host-membw: $s" ;;
    *) bad "host-membw: $s ($(get 'd["multi_stream_bottleneck"]' < "$W/sharedbw.json"))" ;;
esac
s=$($PY - "$W" <<'PY'
import json, sys
a, c, d = (json.load(open(f"{sys.argv[1]}/{n}.json")) for n in ("shared", "nocodec", "slowcodec"))
print(c["single_stream_tps"] > a["single_stream_tps"] > d["single_stream_tps"], "mostly the codec" in d["single_stream_bottleneck"])
PY
)
[ "$s" = "True True" ] && echo "  ok   the codec's ns per byte slows one stream and is named when it dominates" ||
    bad "codec term: $s ($(get 'd["single_stream_bottleneck"]' < "$W/slowcodec.json"))"
grep -q "^codec-ns-per-byte = [0-9]" "$W/node.ini" 2>/dev/null && echo "  ok   --measure times the codec" ||
    bad "--measure prints no codec-ns-per-byte: $(cat "$W/node.ini" 2>/dev/null)"

[ $fail = 0 ] && echo "test_pool_plan: all passed ($n error checks)" || echo "test_pool_plan: FAILED"
exit $fail
