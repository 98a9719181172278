#!/usr/bin/env python3
"""What a function spends its time on: `perf script` output on stdin, a function name (a
substring of the symbol) as the argument; prints the callee tree below it, inclusive, as a
share of all samples, to a few levels.

    perf script -i OUT/perf.data | python3 scripts/profile.d/tree.py AuditLog::append [DEPTH]
"""
import re
import sys
from collections import defaultdict

FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)(\+0x[0-9a-f]+)?\s+\((.*)\)\s*$")


def samples(lines):
    stack = []
    for line in lines:
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        m = FRAME.match(line)
        if m:
            stack.append(m.group(1))
    if stack:
        yield stack


def short(sym):
    sym = re.sub(r"<impl [^>]*>", "<impl>", sym)
    return sym if len(sym) <= 110 else sym[:107] + "..."


def main():
    root = sys.argv[1]
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    total = 0
    tree = defaultdict(int)
    for stack in samples(sys.stdin):
        total += 1
        # Leaf first: find the outermost frame matching root, then walk towards the leaf.
        idx = [i for i, f in enumerate(stack) if root in f]
        if not idx:
            continue
        at = idx[-1]
        path = ()
        tree[path] += 1
        for f in reversed(stack[:at]):
            if len(path) >= depth:
                break
            path = path + (short(f),)
            tree[path] += 1
    if not total:
        return
    def show(prefix, indent):
        kids = [(n, p) for p, n in tree.items() if len(p) == len(prefix) + 1 and p[:-1] == prefix]
        for n, p in sorted(kids, reverse=True):
            pct = 100.0 * n / total
            if pct < 0.3:
                continue
            print(f"{'  ' * indent}{pct:5.1f}%  {p[-1]}")
            show(p, indent + 1)
    print(f"{100.0 * tree[()] / total:5.1f}%  {root} (of {total} samples)")
    show((), 1)


if __name__ == "__main__":
    main()
