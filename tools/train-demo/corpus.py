#!/usr/bin/python3
"""corpus.py - the demo model's text: every fortune of Debian's `fortunes` package.

    corpus.py OUT_DIR [--fortunes DIR] [--every K]

Reads /usr/share/games/fortunes/* (the English, non-offensive collection of the
`fortunes` package; files of ASCII art are left out), splits each file on its
"%" lines into fortunes, normalises whitespace at line ends, drops empty and
duplicate fortunes, keeps every K-th (default 6: about 100,000 tokens with
15,000 distinct ones, what 2 shared cores can train in half an hour - the output
head's softmax over the distinct tokens is most of the cost), and writes, in a
fixed order:
  OUT_DIR/train.jsonl    one JSON string per fortune (95 %)
  OUT_DIR/heldout.jsonl  every 20th fortune (5 %), never trained on
  OUT_DIR/heldout.txt    the held-out fortunes as plain text, separated by blank lines
Deterministic: the same package version gives the same bytes.
"""
import json
import os
import sys

SKIP = {"art", "ascii-art", "translate-me"}  # pictures, not prose; untranslated non-English


def fortunes(folder):
    out, seen = [], set()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name in SKIP or "." in name or not os.path.isfile(path) or os.path.islink(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for chunk in text.split("\n%\n"):
            lines = [ln.rstrip() for ln in chunk.replace("\r", "").split("\n")]
            body = "\n".join(lines).strip("\n")
            if body.strip() in ("", "%") or body in seen:
                continue
            seen.add(body)
            out.append(body)
    return out


def main():
    args = sys.argv[1:]
    folder = "/usr/share/games/fortunes"
    if "--fortunes" in args:
        i = args.index("--fortunes")
        folder = args[i + 1]
        del args[i:i + 2]
    every = 6
    if "--every" in args:
        i = args.index("--every")
        every = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    out = args[0]
    os.makedirs(out, exist_ok=True)
    docs = fortunes(folder)
    if len(docs) < 1000:
        sys.exit(f"corpus.py: only {len(docs)} fortunes in {folder} (apt-get install fortunes)")
    docs = docs[::every]
    train = [d for i, d in enumerate(docs) if i % 20 != 10]
    held = [d for i, d in enumerate(docs) if i % 20 == 10]
    for name, part in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for d in part:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(held) + "\n")
    chars = sum(map(len, docs))
    print(f"corpus.py: {len(docs)} fortunes, {chars} characters: {len(train)} train, {len(held)} held out")


if __name__ == "__main__":
    main()
