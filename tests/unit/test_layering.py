#!/usr/bin/python3
"""test_layering.py - every #include "x.h" of Baton's own code respects the layers.

Layers, lowest first (the order of add_subdirectory in the top-level CMakeLists.txt):
    base < proto = kernels < model = net < client < coordinator = worker < tools
A .c or .h file under one of these folders may include, with quotes, a header of
its own folder (subfolders included: kernels/cpu, tools/bench) or of a folder of
lower rank; never one of the same rank (proto/kernels, model/net,
coordinator/worker) or above. The generated baton.pb-c.h counts as proto's. A
quoted include that resolves to no header of these folders is a violation too.
Each violation is printed as file:line; exit 1 if there is any.

Usage: BATON_SRC=<source dir> /usr/bin/python3 test_layering.py
(without BATON_SRC: the source tree this file is in)
"""
import os
import re
import sys

RANK = {"base": 0, "proto": 1, "kernels": 1, "model": 2, "net": 2, "client": 3,
        "coordinator": 4, "worker": 4, "tools": 5}
GENERATED = {"baton.pb-c.h": "proto"}  # written by protoc-c into the build folder
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    src = os.environ.get("BATON_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # every header of the layered folders, by path relative to its folder and by name
    headers = {}  # include text -> set of top folders that provide it
    files = []
    for top in RANK:
        root = os.path.join(src, top)
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                if n.endswith(".h"):
                    rel = os.path.relpath(p, root)
                    headers.setdefault(rel, set()).add(top)
                    headers.setdefault(n, set()).add(top)
                if n.endswith((".c", ".h")):
                    files.append((top, p))
    for name, top in GENERATED.items():
        headers.setdefault(name, set()).add(top)
    if len(files) < 20:
        print("test_layering: only %d sources under %s: wrong BATON_SRC?" % (len(files), src))
        return 1

    bad = 0
    checked = 0
    for top, path in sorted(files):
        rel_path = os.path.relpath(path, src)
        with open(path, encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                checked += 1
                inc = m.group(1)
                # as the compiler does: next to the including file first
                if os.path.isfile(os.path.join(os.path.dirname(path), inc)):
                    continue
                owners = headers.get(inc, set())
                if not owners:
                    print('%s:%d: #include "%s": no such header under %s' % (rel_path, no, inc, ", ".join(RANK)))
                    bad += 1
                    continue
                if top in owners or any(RANK[o] < RANK[top] for o in owners):
                    continue
                lower = sorted((t for t in RANK if RANK[t] < RANK[top]), key=lambda t: RANK[t])
                print('%s:%d: #include "%s": a header of %s/ (rank %d); %s/ (rank %d) may include only its own '
                      "headers and those of %s"
                      % (rel_path, no, inc, "/, ".join(sorted(owners)), min(RANK[o] for o in owners), top,
                         RANK[top], ", ".join(lower) or "no other folder"))
                bad += 1
    print("test_layering: %d files, %d quoted includes, %d violation(s)" % (len(files), checked, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
